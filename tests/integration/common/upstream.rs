//! Upstreams: a recording HTTP/1.1 and HTTP/2 upstream, and the bodies tests send and expect.

use super::*;

/// 64 KiB of fixed pseudo-random bytes, the unit of streamed test bodies.
pub static CHUNK: LazyLock<Bytes> = LazyLock::new(|| {
    let mut x: u32 = 0x1234_5678;
    Bytes::from(
        (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect::<Vec<u8>>(),
    )
});

/// SHA-256 of `n` chunks of [`CHUNK`].
pub fn pattern_sha256(chunks: usize) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for _ in 0..chunks {
        ctx.update(&CHUNK);
    }
    hex::encode(ctx.finish())
}

/// Request/response body for tests: empty, fixed bytes, or `n` streamed chunks.
pub enum TestBody {
    Full(Full<Bytes>),
    Pattern {
        remaining: usize,
    },
    /// Like `Pattern` but with no declared length (sent chunked).
    Unsized {
        remaining: usize,
    },
}

impl TestBody {
    pub fn empty() -> Self {
        Self::Full(Full::new(Bytes::new()))
    }
    pub fn bytes(b: impl Into<Bytes>) -> Self {
        Self::Full(Full::new(b.into()))
    }
    pub fn pattern(chunks: usize) -> Self {
        Self::Pattern { remaining: chunks }
    }
    pub fn unsized_pattern(chunks: usize) -> Self {
        Self::Unsized { remaining: chunks }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(f) => Pin::new(f).poll_frame(cx),
            TestBody::Pattern { remaining } | TestBody::Unsized { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                *remaining -= 1;
                Poll::Ready(Some(Ok(Frame::data(CHUNK.clone()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            TestBody::Full(f) => f.is_end_stream(),
            TestBody::Pattern { remaining } | TestBody::Unsized { remaining } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(f) => f.size_hint(),
            TestBody::Pattern { remaining } => {
                SizeHint::with_exact((*remaining * CHUNK.len()) as u64)
            }
            TestBody::Unsized { .. } => SizeHint::default(),
        }
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub version: http::Version,
}

/// How a test upstream speaks.
#[derive(Clone, Default)]
pub struct UpstreamOptions {
    pub h2: bool,
    /// Serve TLS with this config (https:// upstream).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Bind this address (to restart a stopped upstream on its old port).
    pub addr: Option<SocketAddr>,
}

/// A recording upstream on 127.0.0.1. Behaviour by path:
/// `/slow…` sleeps 10 s, `/wait…` 500 ms; `/download/N` streams N chunks; `/upload…` answers the
/// body's SHA-256; `/healthz` answers 200 or 503 as set by [`Upstream::set_healthy`]; `/ws`
/// accepts a WebSocket-style upgrade and echoes bytes; anything else answers 200
/// `upstream saw <path>`, with a `connection`/`keep-alive` pair of hop-by-hop headers that must
/// not reach the client.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::AbortHandle,
    /// The connections' tasks.
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections accepted so far, and those still open.
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

/// Counts a connection as open until dropped.
struct OpenConn(Arc<AtomicUsize>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_with(UpstreamOptions::default()).await
    }

    pub async fn start_with(opts: UpstreamOptions) -> Self {
        let listener = TcpListener::bind(
            opts.addr
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr")),
        )
        .await
        .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (rec, health, conns) = (seen.clone(), healthy.clone(), tasks.clone());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (n_accepted, n_open) = (accepted.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                n_accepted.fetch_add(1, Ordering::SeqCst);
                n_open.fetch_add(1, Ordering::SeqCst);
                let counted = OpenConn(n_open.clone());
                let (rec, health, opts) = (rec.clone(), health.clone(), opts.clone());
                let conn = tokio::spawn(async move {
                    let _counted = counted;
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (rec, health) = (rec.clone(), health.clone());
                        async move { Ok::<_, Infallible>(upstream_answer(rec, health, req).await) }
                    });
                    match opts.tls {
                        Some(cfg) => {
                            let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            serve_io(TokioIo::new(tls), svc, opts.h2).await;
                        }
                        None => serve_io(TokioIo::new(tcp), svc, opts.h2).await,
                    }
                });
                conns.lock().expect("lock").push(conn.abort_handle());
            }
        });
        Self {
            addr,
            seen,
            healthy,
            accept: accept.abort_handle(),
            tasks,
            accepted,
            open,
        }
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open (a client's close is seen when its connection ends).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy
            .store(healthy, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops listening and drops every open connection, as a crashed process would.
    pub fn stop(&self) {
        self.accept.abort();
        self.close_connections();
    }

    /// Closes every open connection without a word (as an upstream's own idle timeout does)
    /// and keeps accepting new ones.
    pub fn close_connections(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

pub async fn serve_io<I, S>(io: TokioIo<I>, svc: S, h2: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<TestBody>,
            Error = Infallible,
        > + Send
        + Clone
        + 'static,
    S::Future: Send + 'static,
{
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn upstream_answer(
    rec: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    mut req: Request<Incoming>,
) -> Response<TestBody> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        let ok = healthy.load(std::sync::atomic::Ordering::SeqCst);
        return status_response(if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        });
    }
    rec.lock().expect("lock").push(Seen {
        method: req.method().to_string(),
        path_and_query: path_and_query.clone(),
        headers: req.headers().clone(),
        version: req.version(),
    });
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    if path.starts_with("/wait") {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        // Switches to whatever was asked for, as an upstream that honours h2c would; without an
        // Upgrade header it switches anyway (a misbehaving upstream).
        let proto = req
            .headers()
            .get("upgrade")
            .cloned()
            .unwrap_or_else(|| "echo".parse().expect("hv"));
        let mut r = status_response(StatusCode::SWITCHING_PROTOCOLS);
        r.headers_mut()
            .insert("connection", "upgrade".parse().expect("hv"));
        r.headers_mut().insert("upgrade", proto);
        return r;
    }
    if path == "/close" {
        // Answers, then closes the connection (as an upstream ending keep-alive does).
        let mut r = Response::new(TestBody::bytes("closing"));
        r.headers_mut()
            .insert("connection", "close".parse().expect("hv"));
        return r;
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let n: usize = n.parse().unwrap_or(0);
        return Response::new(TestBody::pattern(n));
    }
    if path.starts_with("/upload") {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        ctx.update(d);
                    }
                }
                Err(_) => return status_response(StatusCode::BAD_REQUEST),
            }
        }
        return Response::new(TestBody::bytes(hex::encode(ctx.finish())));
    }
    let mut r = Response::new(TestBody::bytes(format!("upstream saw {path_and_query}")));
    r.headers_mut().insert(
        "connection",
        "keep-alive, x-upstream-hop".parse().expect("hv"),
    );
    r.headers_mut()
        .insert("x-upstream-hop", "secret".parse().expect("hv"));
    r
}

fn status_response(s: StatusCode) -> Response<TestBody> {
    let mut r = Response::new(TestBody::empty());
    *r.status_mut() = s;
    r
}
