//! Test harness: a PKI made by the test, the real `certgate` binary on 127.0.0.1, a recording
//! upstream, and a rustls + hyper client.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certgate_testpki::{Ca, Issued, LeafSpec};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_certgate");

/// The standard test PKI: root CA, an intermediate, a server cert, files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: Ca,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Ca::root("Test Root CA").expect("root");
        let server = root
            .issue(&LeafSpec::localhost_server())
            .expect("server cert");
        let pki = Self { dir, root, server };
        pki.write("ca.pem", &pki.root.cert_pem);
        pki.write("server.pem", &pki.server.cert_pem);
        pki.write("server-key.pem", &pki.server.key_pem);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write test file");
        p
    }

    /// Issues a client certificate from `ca` and writes `<name>.pem` / `<name>-key.pem`.
    pub fn client(&self, ca: &Ca, name: &str, spec: LeafSpec) -> Issued {
        let c = ca.issue(&spec).expect("issue client");
        self.write(&format!("{name}.pem"), &c.cert_pem);
        self.write(&format!("{name}-key.pem"), &c.key_pem);
        c
    }
}

pub fn spiffe(sa: &str) -> String {
    format!("spiffe://example.org/ns/test/sa/{sa}")
}

/// A client spec with a SPIFFE URI SAN.
pub fn workload(sa: &str) -> LeafSpec {
    LeafSpec {
        uris: vec![spiffe(sa)],
        o: Some("Example".into()),
        ..LeafSpec::client(sa)
    }
}

pub fn free_addr() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("bind ephemeral");
    l.local_addr().expect("local addr")
}

/// An address where nothing listens, ever: a privileged port on loopback (`n` in 1..=9), so
/// no parallel test can bind it between the config being written and the request.
pub fn dead_addr(n: u16) -> SocketAddr {
    assert!((1..=9).contains(&n));
    SocketAddr::from(([127, 0, 0, 1], n))
}

/// The real binary, running `certgate run --config <dir>/certgate.toml`.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Gateway {
    /// Writes a config (listener and admin sections are added here) and starts the gateway.
    pub async fn start(pki: &Pki, body: &str) -> Self {
        Self::start_with_listener(pki, "", body).await
    }

    /// As [`Gateway::start`], with extra `[listener]` keys.
    pub async fn start_with_listener(pki: &Pki, listener_extra: &str, body: &str) -> Self {
        // A port found free can be taken (e.g. as the source port of a parallel test's
        // connection) before the gateway binds it: then try other ports.
        for _ in 0..5 {
            let addr = free_addr();
            let admin = free_addr();
            let config = format!(
                "[listener]\nbind = \"{addr}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{listener_extra}\n\
                 [admin]\nbind = \"{admin}\"\n\n{body}"
            );
            let config_path = pki.write("certgate.toml", &config);
            match Self::try_launch(&config_path, addr, admin).await {
                Ok(gw) => return gw,
                Err(logs) if logs.contains("in use") => continue,
                Err(logs) => panic!("{logs}"),
            }
        }
        panic!("no free ports for the gateway after 5 attempts");
    }

    /// Runs the binary on an existing config file that binds `addr` and `admin`.
    pub async fn launch(
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Self {
        Self::try_launch(config_path, addr, admin)
            .await
            .unwrap_or_else(|logs| panic!("{logs}"))
    }

    /// Runs the binary from `cwd` with `--config` given relative to it, as a user typing the
    /// README's command would.
    pub async fn launch_in(
        cwd: &std::path::Path,
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Self {
        Self::try_launch_in(Some(cwd), config_path, addr, admin)
            .await
            .unwrap_or_else(|logs| panic!("{logs}"))
    }

    async fn try_launch(
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Self, String> {
        Self::try_launch_in(None, config_path, addr, admin).await
    }

    async fn try_launch_in(
        cwd: Option<&std::path::Path>,
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Self, String> {
        let full = cwd.map_or_else(|| config_path.to_path_buf(), |d| d.join(config_path));
        let dir = full.parent().expect("config dir");
        let log = dir.join(format!("gateway-{}.log", addr.port()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(BIN);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let child = cmd
            .args(["--log-format", "json", "run", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info,certgate=debug")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn certgate");
        let mut gw = Self {
            child,
            addr,
            admin,
            log,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "certgate exited early ({status}):\n{}",
                    self.logs()
                ));
            }
            // Serving: ready, or not Ready only because a CRL input is unusable (tests of
            // unusable CRLs run the gateway that way on purpose).
            match admin_get(self.admin, "/readyz").await {
                Ok((StatusCode::OK, _)) => return Ok(()),
                Ok((StatusCode::SERVICE_UNAVAILABLE, body))
                    if body.contains("\"status\":\"not_ready\"")
                        && !body.contains("\"unusable\":[]")
                        && self.logs().contains("certgate serving") =>
                {
                    return Ok(());
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("certgate not ready in time:\n{}", self.logs()))
    }

    /// Waits (up to 5 s) until the log contains `needle`: log lines are written by a background
    /// thread, so they can trail the response or metric a test just saw.
    pub async fn wait_for_log(&self, needle: &str) {
        for _ in 0..250 {
            if self.logs().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("log never contained {needle:?}:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "certgate did not exit in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of one metric line, e.g. `certgate_tls_handshakes_total{result="ok"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = admin_get(self.admin, "/metrics").await.expect("metrics");
        metric_value(&body, series).unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    }

    /// Asserts that a series reaches `expected`. Requests are recorded when their response body
    /// ends, which can trail the client's last read by a moment, hence the short wait.
    pub async fn assert_metric(&self, series: &str, expected: f64) {
        let mut last = None;
        for _ in 0..100 {
            let (_, body) = admin_get(self.admin, "/metrics").await.expect("metrics");
            last = metric_value(&body, series);
            if last == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{series}: expected {expected}, got {last:?}");
    }

    /// Current peak RSS (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` once `within` has passed.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Plain HTTP/1.1 POST to the admin listener.
pub async fn admin_post(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    admin_request(addr, http::Method::POST, path)
        .await
        .expect("admin POST")
}

/// Plain HTTP/1.1 GET to the admin listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    admin_request(addr, http::Method::GET, path).await
}

async fn admin_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
) -> Result<(StatusCode, String), String> {
    admin_request_with(addr, method, path, &[("host", &addr.to_string())]).await
}

/// An admin request with exactly these headers (e.g. another Host, an Authorization).
pub async fn admin_request_with(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// === client ===

#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    /// Connect from this loopback address (127.0.0.2, …) instead of the default.
    source: Option<std::net::IpAddr>,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub enum Proto {
    H1,
    H2,
}

impl TlsClient {
    /// `cert`: the client certificate (and key) files in the PKI dir, by name; `None` for no cert.
    pub fn new(pki: &Pki, addr: SocketAddr, cert: Option<&str>) -> Self {
        Self::with_versions(
            pki,
            addr,
            cert,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    pub fn with_versions(
        pki: &Pki,
        addr: SocketAddr,
        cert: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(pki.root.der.clone()))
            .expect("root");
        let b = rustls::ClientConfig::builder_with_provider(certgate::authn::tls::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match cert {
            None => b.with_no_client_auth(),
            Some(name) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(pki.path(&format!("{name}.pem")))
                        .expect("client pem")
                        .collect::<Result<_, _>>()
                        .expect("client pem");
                let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}-key.pem")))
                    .expect("client key");
                b.with_client_auth_cert(chain, key).expect("client auth")
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            config: Arc::new(config),
            addr,
            source: None,
        }
    }

    /// The same client, connecting from `ip` (another loopback address).
    pub fn with_source(mut self, ip: &str) -> Self {
        self.source = Some(ip.parse().expect("source ip"));
        self
    }

    /// The client's TLS config offering only `proto` by ALPN (for clients built on other crates).
    pub fn with_alpn(&self, proto: &Proto) -> Arc<rustls::ClientConfig> {
        let mut c = (*self.config).clone();
        c.alpn_protocols = match proto {
            Proto::H1 => vec![b"http/1.1".to_vec()],
            Proto::H2 => vec![b"h2".to_vec()],
        };
        Arc::new(c)
    }

    pub async fn tls(
        &self,
        proto: &Proto,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = match self.source {
            None => TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| e.to_string())?;
                socket.connect(self.addr).await
            }
        }
        .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.with_alpn(proto));
        let name = ServerName::try_from("localhost").expect("name");
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    }

    /// A keep-alive HTTP/1.1 connection.
    pub async fn h1(&self) -> Result<hyper::client::conn::http1::SendRequest<TestBody>, String> {
        let tls = self.tls(&Proto::H1).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// An HTTP/2 connection.
    pub async fn h2(&self) -> Result<hyper::client::conn::http2::SendRequest<TestBody>, String> {
        let tls = self.tls(&Proto::H2).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("server did not negotiate h2".into());
        }
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// GET on a fresh HTTP/1.1 connection.
    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.send(
            Request::get(path)
                .header("host", "localhost")
                .body(TestBody::empty())
                .expect("req"),
        )
        .await
    }

    /// Sends one request on a fresh HTTP/1.1 connection and reads the whole answer.
    pub async fn send(&self, req: Request<TestBody>) -> Result<Reply, String> {
        let mut send = self.h1().await?;
        read_reply(send.send_request(req).await.map_err(|e| e.to_string())?).await
    }
}

/// Writes `request` byte for byte on a fresh HTTP/1.1 TLS connection and returns what comes
/// back: everything until the server closes, or until it has been quiet for 300 ms after
/// answering (5 s for the first byte).
pub async fn raw_exchange(client: &TlsClient, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut tls = client.tls(&Proto::H1).await.expect("tls");
    tls.write_all(request).await.expect("write request");
    read_until_quiet(&mut tls).await
}

/// Reads until EOF, or 300 ms of quiet after the first byte (5 s before it).
pub async fn read_until_quiet<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let wait = if out.is_empty() {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(300)
        };
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `raw` (0 when there is none).
pub fn status_of(raw: &str) -> u16 {
    raw.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub async fn read_reply(resp: Response<Incoming>) -> Result<Reply, String> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

// === bodies ===

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

// === upstream ===

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

/// Runs the binary with arguments and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run certgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `[client_auth]` in require mode trusting the PKI root, plus `extra` lines.
/// One gateway of several sharing a PKI directory: `body` (everything after `[listener]`,
/// `[admin]` and `[reload] watch = false`, which are added on free ports) is written to
/// `name`.toml. Returns the file and the two addresses, for [`Gateway::launch`].
pub fn write_named_config(
    pki: &Pki,
    name: &str,
    body: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let text = format!(
        "[listener]\nbind = \"{addr}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\n\
         [admin]\nbind = \"{admin}\"\n\n[reload]\nwatch = false\n\n{body}"
    );
    (pki.write(&format!("{name}.toml"), &text), addr, admin)
}

/// A config that is only checked or inspected, never run: `[listener]` and `[admin]` on port 0
/// and `body`, written to `certgate.toml`.
pub fn write_check_config(pki: &Pki, body: &str) -> PathBuf {
    pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n[admin]\nbind = \"127.0.0.1:0\"\n{body}"
        ),
    )
}

/// One route `api` for every path and client, to upstream `up`, with `extra` keys.
pub fn route_all(extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n{extra}\n"
    )
}

pub fn client_auth(mode: &str, extra: &str) -> String {
    format!("[client_auth]\nmode = \"{mode}\"\ntrust_store = [\"ca.pem\"]\n{extra}\n")
}

pub fn upstream_section(name: &str, url: &str, extra: &str) -> String {
    format!("[upstreams.{name}]\nurl = \"{url}\"\n{extra}\n")
}

// === WebSocket ===

/// A WebSocket echo server (tokio-tungstenite) on 127.0.0.1.
pub async fn websocket_upstream() -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `wss://localhost/ws/chat` through the gateway with the client certificate
/// `cert`.
pub async fn ws_connect(
    pki: &Pki,
    gw: &Gateway,
    cert: &str,
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    ws_connect_with(pki, gw, cert, "/ws/chat", &[]).await
}

/// As [`ws_connect`], to `path` with extra request headers.
pub async fn ws_connect_with(
    pki: &Pki,
    gw: &Gateway,
    cert: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let config = TlsClient::new(pki, gw.addr, Some(cert)).with_alpn(&Proto::H1);
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}{path}", gw.addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    tokio_tungstenite::client_async(req, tls)
        .await
        .map(|(ws, _)| ws)
}

// === document server (JWKS, CRL URLs) ===

/// A loopback HTTP(S) server answering every GET with one document the test can change (or
/// with a status), counting the requests; honours `If-None-Match` against its ETag.
pub struct DocServer {
    pub addr: SocketAddr,
    doc: Arc<Mutex<(u16, Bytes)>>,
    hits: Arc<AtomicUsize>,
    /// When not 0: answer with this many pattern chunks, without a declared length.
    endless: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl DocServer {
    /// Serves `body` with 200; over TLS with `tls` (a server config for `localhost`).
    pub async fn start(body: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let doc = Arc::new(Mutex::new((200u16, Bytes::from(body.to_string()))));
        let hits = Arc::new(AtomicUsize::new(0));
        let endless = Arc::new(AtomicUsize::new(0));
        let (d, h, e) = (doc.clone(), hits.clone(), endless.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (d, h, e, tls) = (d.clone(), h.clone(), e.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (d, h, e) = (d.clone(), h.clone(), e.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let chunks = e.load(Ordering::SeqCst);
                            if chunks > 0 {
                                return Ok(Response::new(TestBody::unsized_pattern(chunks)));
                            }
                            let (status, body) = d.lock().expect("lock").clone();
                            let location = body.clone();
                            let etag = format!("\"{}\"", body.len() as u64 * 31 + status as u64);
                            let same = req
                                .headers()
                                .get("if-none-match")
                                .is_some_and(|v| v.as_bytes() == etag.as_bytes());
                            let mut r = Response::new(TestBody::bytes(if same {
                                Bytes::new()
                            } else {
                                body
                            }));
                            *r.status_mut() = if same {
                                StatusCode::NOT_MODIFIED
                            } else {
                                StatusCode::from_u16(status).expect("status")
                            };
                            r.headers_mut().insert("etag", etag.parse().expect("etag"));
                            // A redirect points at its body (see `set`).
                            if (300..400).contains(&status)
                                && let Ok(to) = http::HeaderValue::from_bytes(&location)
                            {
                                r.headers_mut().insert("location", to);
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    match tls {
                        Some(cfg) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                serve_io(TokioIo::new(s), svc, false).await;
                            }
                        }
                        None => serve_io(TokioIo::new(tcp), svc, false).await,
                    }
                });
            }
        })
        .abort_handle();
        Self {
            addr,
            doc,
            hits,
            endless,
            task,
        }
    }

    /// Answers with `chunks` pattern chunks and no declared length (0: back to the document).
    pub fn set_unsized(&self, chunks: usize) {
        self.endless.store(chunks, Ordering::SeqCst);
    }

    /// Answers with `status` and `body`; a 3xx redirects to `body`.
    pub fn set(&self, status: u16, body: &str) {
        *self.doc.lock().expect("lock") = (status, Bytes::from(body.to_string()));
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived (at most 10 s).
    pub async fn wait_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "only {} requests, waited for {n}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server config for `localhost`: the PKI's server certificate.
pub fn localhost_tls(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from(pki.server.der.clone())];
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).expect("key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(certgate::authn::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    )
}

// === openssl (what rcgen will not make) ===

/// Runs `openssl ARGS` in `dir`; panics with openssl's words if it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client certificate made by openssl: `subj`, extra extension lines `ext`, serial `serial`
/// (else a random one), issued by the test root; written as `name.pem` / `name-key.pem`.
pub fn openssl_client(pki: &Pki, name: &str, subj: &str, ext: &str, serial: Option<&str>) {
    let dir = pki.path(&format!("{name}-openssl"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.root.cert_pem).unwrap();
    std::fs::write(dir.join("ca-key.pem"), pki.root.key_pem()).unwrap();
    openssl_issue_client(&dir, subj, ext, serial);
    std::fs::copy(dir.join("c.pem"), pki.path(&format!("{name}.pem"))).unwrap();
    std::fs::copy(dir.join("key.pem"), pki.path(&format!("{name}-key.pem"))).unwrap();
}

/// A P-256 key made by openssl into `dir/out`.
pub fn openssl_ec_key(dir: &std::path::Path, out: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            out,
        ],
    );
}

/// A client certificate (`dir/c.pem`, key `dir/key.pem`) issued by the CA in `dir/ca.pem` +
/// `dir/ca-key.pem`: `subj`, extra extension lines `ext`, serial `serial` (else a random one).
pub fn openssl_issue_client(dir: &std::path::Path, subj: &str, ext: &str, serial: Option<&str>) {
    std::fs::write(
        dir.join("ext.cnf"),
        format!("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n{ext}\n"),
    )
    .unwrap();
    openssl_ec_key(dir, "key.pem");
    openssl(
        dir,
        &[
            "req", "-new", "-key", "key.pem", "-subj", subj, "-out", "c.csr",
        ],
    );
    let serial_args: &[&str] = match serial {
        Some(s) => &["-set_serial", s],
        None => &["-CAcreateserial"],
    };
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "c.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-days",
        "7",
        "-extfile",
        "ext.cnf",
        "-out",
        "c.pem",
    ];
    args.extend_from_slice(serial_args);
    openssl(dir, &args);
}

/// An empty CRL signed by the CA in `dir/ca.pem` + `dir/ca-key.pem` (`openssl ca -gencrl`) into
/// `dir/out`; `crl_ext`: extension lines the CRL carries.
pub fn openssl_gencrl(dir: &std::path::Path, crl_ext: Option<&str>, out: &str) {
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    let ext = crl_ext.map_or(String::new(), |e| format!("[crl_ext]\n{e}\n"));
    std::fs::write(
        dir.join("ca.cnf"),
        format!("[ca]\ndefault_ca = l\n[l]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n{ext}"),
    )
    .unwrap();
    let mut args = vec![
        "ca",
        "-gencrl",
        "-config",
        "ca.cnf",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca-key.pem",
        "-out",
        out,
    ];
    if crl_ext.is_some() {
        args.extend(["-crlexts", "crl_ext"]);
    }
    openssl(dir, &args);
}
