//! [`Snapshot`]: everything a request needs that a reload may change, compiled from one config
//! file, immutable once built. Connections load it once and keep it to the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;

use crate::authn::identity::ClientIdentity;
use crate::authn::tls::{self, ClientAuthSettings, LoadedCrl};
use crate::authz::{Route, RouteTable};
use crate::config::{ClientAuthMode, ConfigError, ConfigFile, StaleCrl};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{Metrics, RouteMetrics};
use crate::upstream::Upstream;
use crate::upstream::registry::UpstreamRegistry;
use crate::util::time::{fmt_time, unix_now};

/// A trust anchor or intermediate as `check` reports it.
#[derive(Debug, Clone)]
pub struct CertSummary {
    pub file: PathBuf,
    pub subject: String,
    pub not_after: i64,
}

/// A CRL as `check` reports it.
#[derive(Debug, Clone)]
pub struct CrlSummary {
    pub file: PathBuf,
    pub crl: LoadedCrl,
}

/// Observation handles for one route, resolved at load time.
pub struct RouteObs {
    pub metrics: RouteMetrics,
    /// The route's id in the credential inventory.
    pub inventory_id: u32,
}

pub struct Snapshot {
    /// Increases with every snapshot built in this process; connections compare it to know
    /// whether their client certificate was verified against the current trust state.
    pub generation: u64,
    pub config_path: PathBuf,
    /// Every file this snapshot was built from (config first), for change detection.
    pub inputs: Vec<PathBuf>,
    pub bind: SocketAddr,
    pub admin_bind: SocketAddr,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
    pub shutdown_grace: Duration,
    pub header_read_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub max_requests_per_connection: u64,
    pub request_body_timeout: Duration,
    /// `listener.strip_request_headers`, as header names.
    pub strip_request_headers: Vec<http::HeaderName>,
    pub client_auth_mode: ClientAuthMode,
    pub tls: Arc<rustls::ServerConfig>,
    /// The same verifier the TLS config uses, for `explain`.
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    pub routes: RouteTable,
    /// Indexed like `routes`.
    pub route_obs: Vec<RouteObs>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub server_cert: ClientIdentity,
    pub trust_anchors: Vec<CertSummary>,
    pub intermediates: Vec<CertSummary>,
    pub crls: Vec<CrlSummary>,
    /// `[inventory]`, with `path` resolved against the config file's directory.
    pub inventory: crate::config::RawInventory,
    pub log: crate::config::RawLog,
    pub reload: crate::config::RawReload,
    pub expiry_window: Duration,
    /// Non-fatal findings for `check` and the startup log.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Loads the file and everything it references, validating all of it.
    pub fn load(
        path: &std::path::Path,
        telemetry: &Telemetry,
        registry: &UpstreamRegistry,
    ) -> Result<Self, ConfigError> {
        Self::build(&ConfigFile::load(path)?, telemetry, registry)
    }

    /// Compiles a parsed config; metric handles and inventory ids come from `telemetry`.
    /// Upstreams whose definition is unchanged come from `registry` with their live state.
    pub fn build(
        file: &ConfigFile,
        telemetry: &Telemetry,
        registry: &UpstreamRegistry,
    ) -> Result<Self, ConfigError> {
        let raw = &file.raw;
        let mut warnings = Vec::new();
        // Server certificate and key.
        let cert_path = file.resolve(&raw.listener.cert);
        let chain = tls::load_certs(&cert_path).map_err(|e| file.invalid("listener.cert", e))?;
        let key = tls::load_key(&file.resolve(&raw.listener.key))
            .map_err(|e| file.invalid("listener.key", e))?;
        let server_cert = ClientIdentity::from_der(chain[0].as_ref())
            .map_err(|e| file.invalid("listener.cert", e))?;

        // Trust store, intermediates, CRLs.
        let ca = &raw.client_auth;
        if ca.trust_store.is_empty() {
            return Err(file.invalid(
                "client_auth.trust_store",
                "at least one PEM bundle is required",
            ));
        }
        let mut roots = RootCertStore::empty();
        let mut trust_anchors = Vec::new();
        for (i, p) in ca.trust_store.iter().enumerate() {
            let key = format!("client_auth.trust_store[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                trust_anchors.push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                roots.add(cert).map_err(|e| {
                    file.invalid(
                        &key,
                        format!("{}: not a usable trust anchor: {e}", path.display()),
                    )
                })?;
            }
        }
        let mut intermediates = Vec::new();
        let mut intermediate_summaries = Vec::new();
        for (i, p) in ca.intermediates.iter().enumerate() {
            let key = format!("client_auth.intermediates[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                intermediate_summaries
                    .push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                intermediates.push(cert);
            }
        }
        let mut crls = Vec::new();
        let now = unix_now();
        for (i, p) in ca.crls.iter().enumerate() {
            let key = format!("client_auth.crls[{i}]");
            let path = file.resolve(p);
            for crl in tls::load_crls(&path).map_err(|e| file.invalid(&key, e))? {
                if crl.next_update.is_some_and(|t| t < now) {
                    let msg = format!(
                        "{}: CRL of {} is past its nextUpdate{}",
                        path.display(),
                        crl.issuer,
                        match ca.stale_crl {
                            StaleCrl::Deny =>
                                "; with stale_crl = \"deny\" every client of that CA is refused",
                            StaleCrl::Warn => "",
                        }
                    );
                    warnings.push(msg);
                }
                crls.push(CrlSummary {
                    file: path.clone(),
                    crl,
                });
            }
        }
        if crls.is_empty() {
            warnings.push(
                "client_auth.crls is empty: revoked client certificates will be accepted until they expire"
                    .to_string(),
            );
        } else {
            for c in trust_anchors.iter().chain(&intermediate_summaries) {
                if !crls.iter().any(|crl| crl.crl.issuer == c.subject) {
                    warnings.push(format!(
                        "no CRL loaded for CA {} ({}); with unknown_revocation = \"{}\" its certificates are {}",
                        c.subject,
                        c.file.display(),
                        if ca.unknown_revocation == crate::config::UnknownRevocation::Deny { "deny" } else { "allow" },
                        if ca.unknown_revocation == crate::config::UnknownRevocation::Deny { "refused" } else { "not revocation-checked" },
                    ));
                }
            }
        }
        let client_verifier = tls::client_verifier(ClientAuthSettings {
            mode: ca.mode,
            roots,
            crls: crls.iter().map(|c| c.crl.der.clone()).collect(),
            intermediates,
            revocation_scope: ca.revocation_scope,
            unknown_revocation: ca.unknown_revocation,
            stale_crl: ca.stale_crl,
        })
        .map_err(|e| file.invalid("client_auth", e))?;
        let tls_config = tls::server_config(chain, key, client_verifier.clone()).map_err(|e| {
            file.invalid("listener.key", format!("does not fit listener.cert: {e}"))
        })?;

        // Upstreams and routes.
        let mut upstreams = Vec::new();
        let mut upstream_ix = HashMap::new();
        for (name, u) in &raw.upstreams {
            let up = registry
                .resolve(name, u, file, &telemetry.metrics)
                .map_err(|(k, p)| file.invalid(format!("upstreams.{name}.{k}"), p))?;
            upstream_ix.insert(name.clone(), upstreams.len());
            upstreams.push(up);
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            if let Some(prev) = routes.iter().find(|p| p.name == r.name) {
                return Err(file.invalid(
                    format!("routes[{i}].name"),
                    format!(
                        "duplicate route name {:?} (also routes[{}])",
                        r.name, prev.index
                    ),
                ));
            }
            let route = Route::compile(i, r, |n| upstream_ix.get(n).copied())
                .map_err(|e| file.invalid(format!("routes[{i}].{}", e.key), e.problem))?;
            if let Some(earlier) = routes.iter().find(|e| route.is_shadowed_by(e)) {
                warnings.push(format!(
                    "routes[{i}] ({:?}) is never reached: routes[{}] ({:?}) matches all of its requests first",
                    route.name, earlier.index, earlier.name
                ));
            }
            if route.allow.is_empty() && !route.allow_unauthenticated {
                warnings.push(format!(
                    "routes[{i}] ({:?}) has no allow entry and denies everyone",
                    route.name
                ));
            }
            if route.allow_unauthenticated && ca.mode == ClientAuthMode::Require {
                warnings.push(format!(
                    "routes[{i}] ({:?}) sets allow_unauthenticated, which has no effect with client_auth.mode = \"require\"",
                    route.name
                ));
            }
            routes.push(route);
        }
        if routes.is_empty() {
            warnings.push("no routes: every request will get 404".to_string());
        }
        let l = &raw.listener;
        if l.max_request_header_bytes.as_u64() < 1024 {
            return Err(file.invalid(
                "listener.max_request_header_bytes",
                "must be at least 1 KiB",
            ));
        }
        if l.max_connections == 0 {
            return Err(file.invalid("listener.max_connections", "must be at least 1"));
        }
        if l.max_concurrent_streams == 0 {
            return Err(file.invalid("listener.max_concurrent_streams", "must be at least 1"));
        }
        if raw.inventory.max_entries == 0 {
            return Err(file.invalid("inventory.max_entries", "must be at least 1"));
        }
        if raw.inventory.flush_interval.is_zero() {
            return Err(file.invalid("inventory.flush_interval", "must be greater than zero"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            return Err(file.invalid("log.level", format!("{:?}: {e}", raw.log.level)));
        }
        let route_obs = routes
            .iter()
            .map(|r| RouteObs {
                metrics: telemetry.metrics.route(&r.name),
                inventory_id: telemetry.inventory.route_id(&r.name),
            })
            .collect();
        if !raw.admin.bind.ip().is_loopback() {
            warnings.push(format!(
                "admin.bind = {} is not a loopback address: /metrics and health endpoints are reachable from the network without authentication",
                raw.admin.bind
            ));
        }
        if server_cert.not_after < now {
            warnings.push(format!(
                "listener.cert: the server certificate expired ({})",
                fmt_time(server_cert.not_after)
            ));
        }

        let strip_request_headers = compile_strip_list(file)?;
        if l.request_body_timeout.is_zero() {
            return Err(file.invalid("listener.request_body_timeout", "must be greater than zero"));
        }

        Ok(Self {
            generation: next_generation(),
            config_path: file.path.clone(),
            inputs: inputs_of(file),
            bind: raw.listener.bind,
            admin_bind: raw.admin.bind,
            handshake_timeout: raw.listener.handshake_timeout,
            drain_timeout: raw.listener.drain_timeout,
            shutdown_grace: raw.listener.shutdown_grace,
            header_read_timeout: raw.listener.header_read_timeout,
            max_request_header_bytes: usize::try_from(l.max_request_header_bytes.as_u64())
                .unwrap_or(usize::MAX),
            max_connections: l.max_connections,
            max_concurrent_streams: l.max_concurrent_streams,
            max_requests_per_connection: l.max_requests_per_connection,
            request_body_timeout: l.request_body_timeout,
            strip_request_headers,
            client_auth_mode: ca.mode,
            tls: Arc::new(tls_config),
            client_verifier,
            routes: RouteTable::new(routes),
            route_obs,
            upstreams,
            server_cert,
            trust_anchors,
            intermediates: intermediate_summaries,
            crls,
            inventory: crate::config::RawInventory {
                path: raw.inventory.path.as_deref().map(|p| file.resolve(p)),
                ..raw.inventory.clone()
            },
            log: raw.log.clone(),
            reload: raw.reload.clone(),
            expiry_window: raw.expiry.warning_window,
            warnings,
        })
    }
}

impl Snapshot {
    /// Certificates and CRLs that expire (or are stale) within the warning window.
    pub fn expiry_warnings(&self, now: i64) -> Vec<String> {
        let window = self.expiry_window.as_secs() as i64;
        let mut out = Vec::new();
        let days = |t: i64| (t - now) as f64 / 86400.0;
        let cert = self.server_cert.not_after;
        if cert <= now {
            out.push(format!("server certificate expired at {}", fmt_time(cert)));
        } else if cert - now <= window {
            out.push(format!(
                "server certificate expires at {} (in {:.1} days)",
                fmt_time(cert),
                days(cert)
            ));
        }
        for c in &self.crls {
            let Some(next) = c.crl.next_update else {
                continue;
            };
            if next <= now {
                out.push(format!(
                    "CRL {} is past its nextUpdate ({})",
                    c.file.display(),
                    fmt_time(next)
                ));
            } else if next - now <= window {
                out.push(format!(
                    "CRL {} reaches its nextUpdate at {} (in {:.1} days): republish it",
                    c.file.display(),
                    fmt_time(next),
                    days(next)
                ));
            }
        }
        out
    }

    /// Publishes the gauges that describe this snapshot (call when it goes live).
    pub fn publish(&self, metrics: &Metrics) {
        metrics.server_cert_expiry.set(self.server_cert.not_after);
        let files: Vec<(String, Option<i64>)> = self
            .crls
            .iter()
            .map(|c| (c.file.display().to_string(), c.crl.next_update))
            .collect();
        metrics.set_crl_next_updates(files.iter().map(|(f, t)| (f.as_str(), *t)));
    }
}

/// The config file and every file it references, resolved.
/// `listener.strip_request_headers` as lower-case header names; the headers certgate itself
/// needs to frame and route a request cannot be listed.
fn compile_strip_list(file: &ConfigFile) -> Result<Vec<http::HeaderName>, ConfigError> {
    file.raw
        .listener
        .strip_request_headers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let key = format!("listener.strip_request_headers[{i}]");
            let n = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| file.invalid(&key, format!("{name:?} is not a header name")))?;
            if [
                http::header::HOST,
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
            ]
            .contains(&n)
            {
                return Err(file.invalid(&key, format!("{name:?} is needed to frame the request")));
            }
            Ok(n)
        })
        .collect()
}

fn inputs_of(file: &ConfigFile) -> Vec<PathBuf> {
    let raw = &file.raw;
    let ca = &raw.client_auth;
    let mut paths = vec![
        file.path.clone(),
        raw.listener.cert.clone(),
        raw.listener.key.clone(),
    ];
    paths.extend(
        ca.trust_store
            .iter()
            .chain(&ca.intermediates)
            .chain(&ca.crls)
            .cloned(),
    );
    for u in raw.upstreams.values() {
        paths.extend(
            [&u.ca, &u.client_cert, &u.client_key]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    paths.iter().map(|p| file.resolve(p)).collect()
}

/// Monotonic snapshot numbering within this process.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn summarize(
    path: &std::path::Path,
    cert: &rustls::pki_types::CertificateDer<'_>,
) -> Result<CertSummary, String> {
    let id =
        ClientIdentity::from_der(cert.as_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(CertSummary {
        file: path.to_path_buf(),
        subject: id.subject,
        not_after: id.not_after,
    })
}
