//! Clients: rustls + hyper over TLS, raw bytes, WebSocket.

use super::*;

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

    /// The JSON `error` code of a refusal ("" when there is none).
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["error"].as_str().unwrap_or("").to_string()
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

    /// GET with `headers` on a fresh HTTP/1.1 connection; panics if the exchange fails.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(TestBody::empty()).expect("req"))
            .await
            .expect("exchange")
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
