//! `certgate-bench floor`: the least a reverse proxy built on certgate's stack (tokio, hyper 1,
//! rustls with aws-lc-rs) can do per keep-alive request, as a measuring stick for issue 18. It
//! terminates mTLS exactly as the benchmark's proxies do (client certificate required and
//! verified against the CA and its CRL, TLS 1.2+, ALPN h2 and http/1.1), adds one identity header
//! computed once per connection, and forwards to one HTTP/1.1 upstream over a pool of kept-alive
//! connections. Nothing else: no routing, policy, path or host checks, request id, hop-by-hop
//! screening, timeouts, metrics or logs. Whatever this costs per request, certgate cannot cost
//! less without leaving hyper, tokio or the kernel's TCP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Serves on `bind` until killed; `dir` holds pki.sh's ca.pem, ca.crl, server.pem, server-key.pem.
pub async fn run(bind: SocketAddr, upstream: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(dir)?);
    let pool = Arc::new(Pool {
        upstream,
        idle: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind(bind).await?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, pool) = (acceptor.clone(), pool.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let (_, session) = tls.get_ref();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let Some(xfcc) = session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(identity_header)
            else {
                return;
            };
            let io = TokioIo::new(tls);
            let service =
                hyper::service::service_fn(move |req| forward(pool.clone(), xfcc.clone(), req));
            let _ = if h2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
            };
        });
    }
}

/// The server side of the floor's mTLS, with certgate's own PEM loaders and crypto provider.
fn tls_config(dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use certgate::authn::tls::provider;
    use certgate::util::pem::{load_certs, load_key, server_roots};
    let provider = provider();
    let roots = server_roots(Some(&dir.join("ca.pem"))).map_err(anyhow::Error::msg)?;
    let crl = CertificateRevocationListDer::from_pem_file(dir.join("ca.crl"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls([crl])
    .build()?;
    let chain = load_certs(&dir.join("server.pem")).map_err(anyhow::Error::msg)?;
    let key = load_key(&dir.join("server-key.pem")).map_err(anyhow::Error::msg)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `Hash=<sha256 hex>` of the client certificate, as nginx's and HAProxy's configs add a hash.
fn identity_header(cert: &CertificateDer<'_>) -> HeaderValue {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    HeaderValue::from_str(&format!("Hash={}", hex::encode(digest.as_ref())))
        .unwrap_or_else(|_| HeaderValue::from_static("Hash=?"))
}

async fn forward(
    pool: Arc<Pool>,
    xfcc: HeaderValue,
    req: Request<Incoming>,
) -> Result<Response<Pooled>, Infallible> {
    let (mut parts, body) = req.into_parts();
    if parts.version == Version::HTTP_2 {
        // HTTP/1.1 upstream: origin-form target, the authority as Host.
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(path).unwrap_or_default();
        parts.version = Version::HTTP_11;
    }
    parts.headers.insert(XFCC.clone(), xfcc);
    let answer = match pool.checkout().await {
        Ok(mut sender) => match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                parts.headers.remove(header::CONNECTION);
                let body = Pooled {
                    body: Some(body),
                    sender: Some(sender),
                    pool,
                };
                return Ok(Response::from_parts(parts, body));
            }
            Err(_) => StatusCode::BAD_GATEWAY,
        },
        Err(_) => StatusCode::BAD_GATEWAY,
    };
    let mut resp = Response::new(Pooled {
        body: None,
        sender: None,
        pool,
    });
    *resp.status_mut() = answer;
    Ok(resp)
}

/// Idle upstream connections, most recently used last.
struct Pool {
    upstream: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl Pool {
    fn pop(&self) -> Option<SendRequest<Incoming>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    async fn checkout(&self) -> anyhow::Result<SendRequest<Incoming>> {
        while let Some(mut sender) = self.pop() {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let tcp = tokio::net::TcpStream::connect(self.upstream).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

/// The upstream's response body; its connection goes back to the pool when the body has ended.
struct Pooled {
    body: Option<Incoming>,
    sender: Option<SendRequest<Incoming>>,
    pool: Arc<Pool>,
}

impl Pooled {
    fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sender);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(body).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !self.body.as_ref().is_some_and(Body::is_end_stream) => {}
            Some(Err(_)) => self.sender = None,
            _ => self.release(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Pooled {
    /// A body hyper never polled because it was empty from the start still frees its connection.
    fn drop(&mut self) {
        if self.body.as_ref().is_some_and(Body::is_end_stream) {
            self.release();
        }
    }
}
