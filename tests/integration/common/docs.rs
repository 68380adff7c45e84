//! A document server (JWKS, CRL URLs) over http or https.

use super::*;

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
        let what = format!("{n} requests to the document server");
        wait_until(&what, Duration::from_secs(10), || self.hits() >= n).await;
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
