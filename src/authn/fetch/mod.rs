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

mod download;
pub use download::Downloaded;

/// Where a document is fetched from.
pub struct Fetcher {
    uri: Uri,
    host: String,
    port: u16,
    /// For `https://`: the client config and the name to verify.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A client certificate chain and its key.
pub type ClientIdentity = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// What one POST sends.
pub struct Post {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Sent as `Authorization` (marked sensitive by the caller).
    pub authorization: Option<HeaderValue>,
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
    /// A document larger than allowed (declared or while it streamed).
    pub too_large: prometheus::IntCounter,
}

impl FetchCounters {
    /// `counter` gives the handle for a result label.
    pub fn new(counter: &dyn Fn(&str) -> prometheus::IntCounter) -> Self {
        Self {
            ok: counter("ok"),
            not_modified: counter("not_modified"),
            error: counter("error"),
            invalid: counter("invalid"),
            too_large: counter("too_large"),
        }
    }
}

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL (or its CA bundle) cannot be used: a config problem.
    #[error("{0}")]
    Url(String),
    #[error("cannot load the CA bundle: {0}")]
    Ca(#[from] crate::util::pem::LoadError),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("body: {0}")]
    Body(String),
    /// Declared, or found while it streamed: its own counter.
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// Writing the downloaded document to its cache file.
    #[error("cache: {0}")]
    Cache(std::io::Error),
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
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Self, FetchError> {
        Self::with_identity(url, ca, None)
    }

    /// As [`Fetcher::new`], presenting `identity` (chain and key) when the server asks for a
    /// client certificate (RFC 8705 `tls_client_auth`).
    pub fn with_identity(
        url: &str,
        ca: Option<&Path>,
        identity: Option<ClientIdentity>,
    ) -> Result<Self, FetchError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| FetchError::Url(format!("{url:?} is not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(FetchError::Url(format!(
                    "{url:?}: only http:// and https:// URLs are fetched"
                )));
            }
        };
        if (ca.is_some() || identity.is_some()) && !https {
            return Err(FetchError::Url(
                "a CA bundle or a client certificate only applies to https:// URLs".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| FetchError::Url(format!("{url:?} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots = crate::util::pem::server_roots(ca)?;
            let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| FetchError::Url(e.to_string()))?
                .with_root_certificates(roots);
            let config = match identity {
                None => builder.with_no_client_auth(),
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| FetchError::Url(format!("the client certificate: {e}")))?,
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| FetchError::Url(format!("{host:?} is not a server name: {e}")))?;
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
    ) -> Result<Fetched, FetchError> {
        tokio::time::timeout(timeout, self.exchange(last, max_bytes))
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    /// One POST of `body` (`content_type`) within `timeout`; the answer must be 200 with a body
    /// of at most `max_bytes`.
    pub async fn post(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Bytes, FetchError> {
        let post = Post {
            body,
            content_type,
            authorization: None,
        };
        match self.post_any(post, max_bytes, timeout).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, _) => Err(FetchError::Status(status)),
        }
    }

    /// One POST within `timeout`, whatever the answer's status (an OAuth2 endpoint explains a
    /// refusal in a 400's body): the status and a body of at most `max_bytes`.
    pub async fn post_any(
        &self,
        post: Post,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), FetchError> {
        let exchange = async {
            let mut req = self.request(http::Method::POST, Full::new(Bytes::from(post.body)))?;
            let headers = req.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(post.content_type),
            );
            if let Some(v) = post.authorization {
                headers.insert(header::AUTHORIZATION, v);
            }
            let resp = self.send(req).await?;
            let status = resp.status();
            Ok((status, read_body(resp, max_bytes).await?))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    fn request(
        &self,
        method: http::Method,
        body: Full<Bytes>,
    ) -> Result<Request<Full<Bytes>>, FetchError> {
        Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .header(
                header::HOST,
                self.uri.authority().map_or("", |a| a.as_str()),
            )
            .header(header::USER_AGENT, "certgate")
            .body(body)
            .map_err(|e| FetchError::Url(e.to_string()))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, FetchError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(FetchError::Tls)?;
                send(TokioIo::new(stream), req).await
            }
            None => send(TokioIo::new(tcp), req).await,
        }
    }

    async fn exchange(&self, last: &Validators, max_bytes: usize) -> Result<Fetched, FetchError> {
        let Some((resp, validators)) = self.conditional_get(last).await? else {
            return Ok(Fetched::NotModified);
        };
        let body = read_body(resp, max_bytes).await?;
        Ok(Fetched::Document { body, validators })
    }

    /// A GET conditional on `last`: `None` when the document did not change (304), else the
    /// 200 response and its validators; any other status is an error.
    async fn conditional_get(
        &self,
        last: &Validators,
    ) -> Result<Option<(http::Response<hyper::body::Incoming>, Validators)>, FetchError> {
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
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::OK => {
                let validators = Validators {
                    etag: resp.headers().get(header::ETAG).cloned(),
                    last_modified: resp.headers().get(header::LAST_MODIFIED).cloned(),
                };
                Ok(Some((resp, validators)))
            }
            s => Err(FetchError::Status(s)),
        }
    }
}

async fn read_body(
    resp: http::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<Bytes, FetchError> {
    Ok(Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| FetchError::Body(e.to_string()))?
        .to_bytes())
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, FetchError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
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
        .map_err(FetchError::from)
}
