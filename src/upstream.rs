//! Upstreams: where allowed requests go, with a pooled keep-alive HTTP client each.

use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::RawUpstream;

pub type HttpClient = Client<HttpConnector, Incoming>;

/// One compiled upstream.
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Time allowed for the upstream to produce response headers.
    pub timeout: Duration,
    pub client: HttpClient,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &format_args!("{}://{}", self.scheme, self.authority))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Upstream {
    /// Compiles `[upstreams.NAME]`. Errors are `(key, problem)`.
    pub fn compile(name: &str, raw: &RawUpstream) -> Result<Self, (&'static str, String)> {
        let uri: http::Uri = raw
            .url
            .parse()
            .map_err(|e| ("url", format!("{:?} is not a URL: {e}", raw.url)))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or(("url", "missing scheme (http://)".to_string()))?;
        if scheme != Scheme::HTTP {
            return Err((
                "url",
                format!("scheme {scheme:?} is not supported yet; use http://"),
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or(("url", "missing host".to_string()))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err((
                "url",
                "must be scheme://host:port only; the request path is forwarded as is".to_string(),
            ));
        }
        if raw.timeout.is_zero() {
            return Err(("timeout", "must be greater than zero".to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(raw.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            name: name.to_string(),
            scheme,
            authority,
            timeout: raw.timeout,
            client,
        })
    }
}
