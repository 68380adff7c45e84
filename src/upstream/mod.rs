//! Upstreams: pools of endpoints behind one pooled keep-alive client each, with load balancing,
//! passive outlier ejection, optional active health checks, retries, and TLS/mTLS to `https://`
//! endpoints.

mod balance;
pub mod body;
pub mod credentials;
mod endpoint;
mod forward;
mod health;
mod outlier;
pub mod pool;
pub mod registry;
mod tls;

pub use endpoint::Endpoint;
pub use forward::{ForwardError, Outbound};
pub use health::spawn_background;

use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http::uri::{Scheme, Uri};

use crate::config::{ConfigFile, LoadBalancing, RawHealthCheck, RawUpstream, UpstreamProtocol};
use crate::telemetry::metrics::{Metrics, UpstreamMetrics};
use crate::upstream::pool::Connector;
use crate::upstream::registry::Definition;

/// One compiled upstream pool.
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    pub endpoints: Vec<Endpoint>,
    pub lb: LoadBalancing,
    pub protocol: UpstreamProtocol,
    /// Time allowed for the upstream to produce response headers.
    pub timeout: Duration,
    retries: u32,
    retry_on_status: Vec<u16>,
    eject_after: u32,
    ejection_time: Duration,
    health_check: Option<RawHealthCheck>,
    connector: Connector,
    pub metrics: UpstreamMetrics,
    next: AtomicUsize,
    /// What it was compiled from: an unchanged definition keeps this upstream across reloads.
    definition: Definition,
    /// Background tasks start once per upstream, however many snapshots share it.
    background: Once,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("endpoints", &self.endpoint_list())
            .finish()
    }
}

impl Upstream {
    /// Compiles `[upstreams.NAME]`. Errors are `(key, problem)`.
    pub fn compile(
        name: &str,
        raw: &RawUpstream,
        definition: Definition,
        file: &ConfigFile,
        metrics: &Metrics,
    ) -> Result<Self, (&'static str, String)> {
        let (scheme, endpoints) = compile_endpoints(raw)?;
        check_bounds(raw)?;
        let mut tls = tls::client_tls(raw, &scheme, file)?;
        tls.alpn_protocols = vec![match raw.protocol {
            UpstreamProtocol::Http1 => b"http/1.1".to_vec(),
            UpstreamProtocol::H2 => b"h2".to_vec(),
        }];
        let server_name = match &raw.server_name {
            Some(n) => Some(
                rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| ("server_name", format!("{n:?}: {e}")))?,
            ),
            None => None,
        };
        let upstream_metrics = metrics.upstream(name);
        let connector = Connector {
            protocol: raw.protocol,
            tls: (scheme == Scheme::HTTPS).then(|| Arc::new(tls)),
            server_name,
            connect_timeout: raw.connect_timeout,
            idle_timeout: raw.idle_timeout,
            opened: upstream_metrics.connections.clone(),
        };
        Ok(Self {
            name: name.to_string(),
            scheme,
            endpoints,
            lb: raw.lb,
            protocol: raw.protocol,
            timeout: raw.timeout,
            retries: raw.retries,
            retry_on_status: raw.retry_on_status.clone(),
            eject_after: raw.eject_after,
            ejection_time: raw.ejection_time,
            health_check: raw.health_check.clone(),
            connector,
            metrics: upstream_metrics,
            next: AtomicUsize::new(0),
            definition,
            background: Once::new(),
        })
    }

    /// `scheme://host:port, …` for humans.
    pub fn endpoint_list(&self) -> String {
        self.endpoints
            .iter()
            .map(|e| format!("{}://{}", self.scheme, e.authority))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `url` or `endpoints`: one scheme for all, each `scheme://host:port` only.
fn compile_endpoints(raw: &RawUpstream) -> Result<(Scheme, Vec<Endpoint>), (&'static str, String)> {
    let (key, urls): (&'static str, Vec<&String>) = match (&raw.url, &raw.endpoints) {
        (Some(u), None) => ("url", vec![u]),
        (None, Some(list)) if !list.is_empty() => ("endpoints", list.iter().collect()),
        (None, Some(_)) => return Err(("endpoints", "must list at least one URL".into())),
        (Some(_), Some(_)) => {
            return Err(("url", "give either url or endpoints, not both".into()));
        }
        (None, None) => return Err(("url", "missing: give url or endpoints".into())),
    };
    let mut scheme: Option<Scheme> = None;
    let mut endpoints = Vec::new();
    for u in urls {
        let uri: Uri = u
            .parse()
            .map_err(|e| (key, format!("{u:?} is not a URL: {e}")))?;
        let s = uri
            .scheme()
            .cloned()
            .ok_or((key, format!("{u:?}: missing scheme (http:// or https://)")))?;
        if s != Scheme::HTTP && s != Scheme::HTTPS {
            return Err((
                key,
                format!("{u:?}: scheme {s} is not supported; use http:// or https://"),
            ));
        }
        if scheme.as_ref().is_some_and(|prev| *prev != s) {
            return Err((key, "all endpoints must use the same scheme".into()));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or((key, format!("{u:?}: missing host")))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err((
                key,
                format!(
                    "{u:?}: must be scheme://host:port only; the request path is forwarded as is"
                ),
            ));
        }
        scheme = Some(s);
        endpoints.push(Endpoint::new(authority));
    }
    Ok((scheme.unwrap_or(Scheme::HTTP), endpoints))
}

/// Timeouts, health checks, ejection and retries.
fn check_bounds(raw: &RawUpstream) -> Result<(), (&'static str, String)> {
    if raw.timeout.is_zero() {
        return Err(("timeout", "must be greater than zero".into()));
    }
    if let Some(hc) = &raw.health_check {
        if !hc.path.starts_with('/') {
            return Err(("health_check", "path must start with '/'".into()));
        }
        if hc.interval.is_zero() || hc.timeout.is_zero() {
            return Err((
                "health_check",
                "interval and timeout must be greater than zero".into(),
            ));
        }
    }
    if raw.eject_after == 0 {
        return Err(("eject_after", "must be at least 1".into()));
    }
    if let Some(s) = raw
        .retry_on_status
        .iter()
        .find(|s| !(100..=599).contains(*s))
    {
        return Err(("retry_on_status", format!("{s} is not an HTTP status")));
    }
    Ok(())
}
