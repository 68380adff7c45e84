//! Fetching a document (a JWKS, a CRL) over `http://` or `https://`: one HTTP/1.1 GET on a
//! fresh connection, bounded in time and size, conditional on the last ETag/Last-Modified; and
//! one POST (an OCSP request).
//! Used only off the request path.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::tls;

/// Where a document is fetched from.
pub struct Fetcher {
    uri: Uri,
    host: String,
    port: u16,
    /// For `https://`: the client config and the name to verify.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// The validators of the last good response, sent back to ask "has it changed?".
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

/// `…_fetches_total{…,result}` handles of one fetched document.
pub struct FetchCounters {
    pub ok: prometheus::IntCounter,
    pub not_modified: prometheus::IntCounter,
    pub error: prometheus::IntCounter,
    pub invalid: prometheus::IntCounter,
}

impl FetchCounters {
    /// `counter` gives the handle for a result label.
    pub fn new(counter: &dyn Fn(&str) -> prometheus::IntCounter) -> Self {
        Self {
            ok: counter("ok"),
            not_modified: counter("not_modified"),
            error: counter("error"),
            invalid: counter("invalid"),
        }
    }
}

pub enum Fetched {
    /// 304: the document did not change.
    NotModified,
    Document {
        body: Bytes,
        validators: Validators,
    },
}

impl Fetcher {
    /// Checks the URL and, for https, loads the CA bundle (or the system roots).
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{url:?}: only http:// and https:// URLs are fetched"
                ));
            }
        };
        if ca.is_some() && !https {
            return Err("a CA bundle only applies to https:// URLs".into());
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots = tls::server_roots(ca)?;
            let config = rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            tls,
        })
    }

    /// One GET within `timeout`; a body over `max_bytes` or a status other than 200/304 is an
    /// error.
    pub async fn get(
        &self,
        last: &Validators,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Fetched, String> {
        tokio::time::timeout(timeout, self.exchange(last, max_bytes))
            .await
            .map_err(|_| format!("no complete answer within {timeout:?}"))?
    }

    /// One POST of `body` (`content_type`) within `timeout`; the answer must be 200 with a body
    /// of at most `max_bytes`.
    pub async fn post(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let exchange = async {
            let mut req = self.request(http::Method::POST, Full::new(Bytes::from(body)))?;
            req.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let resp = self.send(req).await?;
            if resp.status() != StatusCode::OK {
                return Err(format!("HTTP status {}", resp.status()));
            }
            read_body(resp, max_bytes).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no complete answer within {timeout:?}"))?
    }

    fn request(
        &self,
        method: http::Method,
        body: Full<Bytes>,
    ) -> Result<Request<Full<Bytes>>, String> {
        Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .header(
                header::HOST,
                self.uri.authority().map_or("", |a| a.as_str()),
            )
            .header(header::USER_AGENT, "certgate")
            .body(body)
            .map_err(|e| e.to_string())
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                send(TokioIo::new(stream), req).await
            }
            None => send(TokioIo::new(tcp), req).await,
        }
    }

    async fn exchange(&self, last: &Validators, max_bytes: usize) -> Result<Fetched, String> {
        let mut req = self.request(http::Method::GET, Full::new(Bytes::new()))?;
        let h = req.headers_mut();
        if let Some(v) = &last.etag {
            h.insert(header::IF_NONE_MATCH, v.clone());
        }
        if let Some(v) = &last.last_modified {
            h.insert(header::IF_MODIFIED_SINCE, v.clone());
        }
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
            StatusCode::OK => {
                let validators = Validators {
                    etag: resp.headers().get(header::ETAG).cloned(),
                    last_modified: resp.headers().get(header::LAST_MODIFIED).cloned(),
                };
                let body = read_body(resp, max_bytes).await?;
                Ok(Fetched::Document { body, validators })
            }
            s => Err(format!("HTTP status {s}")),
        }
    }
}

async fn read_body(
    resp: http::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<Bytes, String> {
    Ok(Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes())
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Origin-form on the wire.
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| format!("HTTP: {e}"))
}
