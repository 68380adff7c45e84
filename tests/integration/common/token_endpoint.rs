//! An OAuth2 token endpoint (RFC 6749 §4.4 client credentials) over TLS, checking the client
//! authentication the way an authorization server does: a `private_key_jwt` assertion
//! (RFC 7523: signature, iss = sub = client_id, aud = the endpoint, exp, a jti never seen
//! before), a TLS client certificate (RFC 8705 `tls_client_auth`), or HTTP Basic.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::*;

/// What the endpoint accepts from its one client.
pub struct Client {
    pub id: String,
    /// `private_key_jwt`: the P-256 public key (uncompressed point) of the assertion signer.
    pub assertion_key: Option<Vec<u8>>,
    /// `client_secret_basic`: the secret.
    pub secret: Option<String>,
    /// `tls_client_auth`: the subject CN the certificate must carry.
    pub cert_cn: Option<String>,
    /// The `scope` the request must ask for.
    pub scope: String,
}

struct State {
    client: Client,
    url: String,
    jtis: Mutex<HashSet<String>>,
    issued: AtomicUsize,
    requests: AtomicUsize,
    expires_in: AtomicU64,
    delay_ms: AtomicU64,
    /// Not 0: answer every request with this status.
    fail_with: AtomicUsize,
    refusals: Mutex<Vec<String>>,
}

pub struct TokenEndpoint {
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

impl TokenEndpoint {
    /// Serves `https://localhost:PORT/token` with the PKI's server certificate; a client
    /// certificate from the PKI's root is asked for (and checked when `cert_cn` is set).
    pub async fn start(pki: &Pki, client: Client) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            client,
            url: format!("https://localhost:{}/token", addr.port()),
            jtis: Mutex::default(),
            issued: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            expires_in: AtomicU64::new(300),
            delay_ms: AtomicU64::new(0),
            fail_with: AtomicUsize::new(0),
            refusals: Mutex::default(),
        });
        let tls = tls_asking_for_client_certs(pki);
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (s, tls) = (s.clone(), tls.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
                        return;
                    };
                    let cn = stream.get_ref().1.peer_certificates().and_then(|c| {
                        let (_, cert) = x509_parser::parse_x509_certificate(&c[0]).ok()?;
                        let cn = cert.subject().iter_common_name().next()?;
                        Some(cn.as_str().ok()?.to_string())
                    });
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, cn) = (s.clone(), cn.clone());
                        async move { Ok::<_, Infallible>(s.answer(req, cn).await) }
                    });
                    serve_io(TokioIo::new(stream), svc, false).await;
                });
            }
        })
        .abort_handle();
        Self { state, task }
    }

    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Each answer waits this long first.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers every request with `status` (0: back to normal).
    pub fn fail_with(&self, status: u16) {
        self.state
            .fail_with
            .store(status as usize, Ordering::SeqCst);
    }

    /// Why requests were refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.state.refusals.lock().expect("lock").clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    async fn answer(&self, req: Request<Incoming>, cn: Option<String>) -> Response<TestBody> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        let fail = self.fail_with.load(Ordering::SeqCst);
        if fail != 0 {
            return reply(fail as u16, r#"{"error":"temporarily_unavailable"}"#.into());
        }
        let basic = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let content_type = req.headers().get("content-type").cloned();
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let form = form(&body.unwrap_or_default());
        let checked = (content_type.as_ref().map(|v| v.as_bytes())
            == Some(b"application/x-www-form-urlencoded"))
        .then_some(())
        .ok_or("content-type is not a form".to_string())
        .and_then(|()| self.check(&form, basic.as_deref(), cn.as_deref()));
        match checked {
            Ok(()) => {
                let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let expires = self.expires_in.load(Ordering::SeqCst);
                let answer = format!(
                    r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{expires}}}"#
                );
                reply(200, answer)
            }
            Err(why) => {
                self.refusals.lock().expect("lock").push(why);
                reply(401, r#"{"error":"invalid_client"}"#.into())
            }
        }
    }

    fn check(
        &self,
        form: &HashMap<String, String>,
        basic: Option<&str>,
        cn: Option<&str>,
    ) -> Result<(), String> {
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return Err("grant_type".into());
        }
        if field("scope") != Some(self.client.scope.as_str()) {
            return Err(format!("scope {:?}", field("scope")));
        }
        let c = &self.client;
        if let Some(secret) = &c.secret {
            let expected = format!("Basic {}", STANDARD.encode(format!("{}:{secret}", c.id)));
            return (basic == Some(expected.as_str()))
                .then_some(())
                .ok_or_else(|| "basic credentials".into());
        }
        if field("client_id") != Some(c.id.as_str()) {
            return Err("client_id".into());
        }
        if let Some(want) = &c.cert_cn {
            return (cn == Some(want.as_str()))
                .then_some(())
                .ok_or_else(|| format!("client certificate {cn:?}"));
        }
        let key = c.assertion_key.as_ref().ok_or("no client authentication")?;
        if field("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err("client_assertion_type".into());
        }
        let jwt = field("client_assertion").ok_or("no client_assertion")?;
        self.check_assertion(jwt, key)
    }

    fn check_assertion(&self, jwt: &str, key: &[u8]) -> Result<(), String> {
        let (signed, sig) = jwt.rsplit_once('.').ok_or("not a JWS")?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| "signature encoding")?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| "assertion signature")?;
        let (header, claims) = signed.split_once('.').ok_or("not a JWS")?;
        let json = |s: &str| -> Result<serde_json::Value, String> {
            let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| "base64")?;
            serde_json::from_slice(&raw).map_err(|e| e.to_string())
        };
        let (header, claims) = (json(header)?, json(claims)?);
        if header["alg"] != "ES256" {
            return Err(format!("alg {}", header["alg"]));
        }
        let id = self.client.id.as_str();
        if claims["iss"] != id || claims["sub"] != id || claims["aud"] != self.url.as_str() {
            return Err(format!("iss/sub/aud {claims}"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let exp = claims["exp"].as_u64().ok_or("no exp")?;
        if exp < now || exp > now + 300 {
            return Err(format!("exp {exp} (now {now})"));
        }
        let jti = claims["jti"].as_str().ok_or("no jti")?.to_string();
        if !self.jtis.lock().expect("lock").insert(jti) {
            return Err("jti replayed".into());
        }
        Ok(())
    }
}

fn reply(status: u16, body: String) -> Response<TestBody> {
    let mut r = Response::new(TestBody::bytes(body));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("ct"));
    r
}

/// An `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// `localhost` with the PKI's server certificate, asking for (not requiring) a client
/// certificate from the PKI's root.
fn tls_asking_for_client_certs(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let provider = certgate::authn::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.root.der.clone()))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("verifier");
    let chain = vec![CertificateDer::from(pki.server.der.clone())];
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).expect("key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config"),
    )
}

/// The uncompressed P-256 point of a certificate's public key (an assertion signer's).
pub fn ec_public_key(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).expect("cert");
    cert.public_key().subject_public_key.data.to_vec()
}
