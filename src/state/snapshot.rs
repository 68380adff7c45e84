//! [`Snapshot`]: everything a request needs that a reload may change, compiled from one config
//! file, immutable once built. Connections load it once and keep it to the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::danger::ClientCertVerifier;

use crate::authn::identity::ClientIdentity;
use crate::authn::token::Issuer;
use crate::authz::RouteTable;
use crate::config::{ClientAuthMode, ConfigError, ConfigFile};
use crate::state::Registries;
use crate::state::crls::{CrlChecks, CrlSummary};
use crate::state::trust::CertSummary;
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{Metrics, RouteMetrics};
use crate::upstream::Upstream;
use crate::util::time::fmt_time;

/// HTTP/2 bounds, set explicitly rather than left to library defaults.
#[derive(Debug, Clone)]
pub struct H2Settings {
    pub idle_timeout: Duration,
    /// `None`: no keep-alive PINGs.
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_pending_accept_reset_streams: usize,
    pub max_local_error_reset_streams: usize,
    /// PING and SETTINGS frames a client may send per second (0: no limit).
    pub max_pings_per_second: u32,
}

/// Observation handles for one route, resolved at load time.
pub struct RouteObs {
    pub metrics: RouteMetrics,
    /// The route's id in the credential inventory.
    pub inventory_id: u32,
}

/// Everything a request needs that a reload may change, in groups: the listener's bounds, the
/// admin listener, TLS and revocation, routing, identity sources, limits, telemetry.
pub struct Snapshot {
    /// Increases with every snapshot built in this process; connections compare it to know
    /// whether their client certificate was verified against the current trust state.
    pub generation: u64,
    pub config_path: PathBuf,
    /// Every file this snapshot was built from (config first), for change detection.
    pub inputs: Vec<PathBuf>,
    pub reload: crate::config::RawReload,
    /// Non-fatal findings for `check` and the startup log.
    pub warnings: Vec<String>,
    pub listener: ListenerSettings,
    pub admin: AdminSettings,
    pub tls: TlsState,
    pub routing: Routing,
    pub identity: IdentitySources,
    pub limits: LimitSettings,
    pub telemetry: TelemetrySettings,
}

/// `[listener]`: where the gateway listens and the bounds of every connection and request.
pub struct ListenerSettings {
    pub bind: SocketAddr,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
    pub shutdown_grace: Duration,
    pub header_read_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub max_requests_per_connection: u64,
    /// HTTP/2 connection settings and bounds (`idle_timeout`, `h2_*`).
    pub h2: H2Settings,
    /// Open connections per client certificate (0 = unlimited).
    pub max_connections_per_identity: usize,
    /// Open connections per source IP (0 = unlimited).
    pub max_connections_per_source_ip: usize,
    pub request_body_timeout: Duration,
    /// `strip_request_headers`, as header names.
    pub strip_request_headers: Vec<http::HeaderName>,
}

/// `[admin]`: where the admin listener listens and who may use its sensitive endpoints.
pub struct AdminSettings {
    pub bind: SocketAddr,
    pub access: super::admin::AdminAccess,
}

/// TLS and revocation: the server config, the client verifier and what it trusts.
pub struct TlsState {
    pub client_auth_mode: ClientAuthMode,
    pub server_config: Arc<rustls::ServerConfig>,
    /// The same verifier the TLS config uses, for `explain`.
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    pub server_cert: ClientIdentity,
    pub trust_anchors: Vec<CertSummary>,
    pub intermediates: Vec<CertSummary>,
    pub crls: Vec<CrlSummary>,
    /// Which configured CRLs are usable, and the problems of those that are not.
    pub crl_checks: CrlChecks,
    /// `client_auth.crl_urls`, fetched in the background into their cache files.
    pub remote_crls: Vec<Arc<crate::authn::revocation::remote::RemoteCrl>>,
    /// `client_auth.ocsp`, unless "off".
    pub ocsp: Option<Arc<crate::authn::revocation::ocsp::OcspPolicy>>,
    /// Trust anchors and intermediates: what a fetched CRL must be issued by.
    pub client_cas: Arc<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

/// Routes and where they forward.
pub struct Routing {
    pub routes: RouteTable,
    /// Indexed like `routes`.
    pub route_obs: Vec<RouteObs>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// The credential the gateway adds to requests to each upstream (indexed like `upstreams`).
    pub upstream_credentials: Vec<Option<Arc<crate::upstream::credentials::UpstreamCredential>>>,
}

/// What vouches for a caller beyond its certificate, and who owns it.
pub struct IdentitySources {
    /// `[token_issuers]` in name order (routes refer to them by index).
    pub token_issuers: Vec<Arc<Issuer>>,
    /// `[owners]`: the owners file compiled, and the governance policy.
    pub owners: crate::authz::owners::Owners,
    /// `[api_keys]`: legacy static keys, for routes that still accept them.
    pub api_keys: Option<Arc<super::api_keys::ApiKeySettings>>,
}

/// `[limits]`: where fleet-wide limits are counted (the routes hold their own limiters).
pub struct LimitSettings {
    pub config: crate::config::RawLimits,
    /// The Redis backend when `backend = "redis"`.
    pub backend: Option<Arc<crate::limits::redis::RedisBackend>>,
}

/// What the gateway records and reports: the inventory, the log, anomaly signals, expiry.
pub struct TelemetrySettings {
    /// `[inventory]`, with its paths resolved against the config file's directory.
    pub inventory: crate::config::RawInventory,
    pub log: crate::config::RawLog,
    /// `[anomaly]`; `None` when the signals are off.
    pub anomaly: Option<crate::telemetry::anomaly::AnomalySpec>,
    pub expiry_window: Duration,
}

impl Snapshot {
    /// Loads the file and everything it references, validating all of it.
    pub fn load(
        path: &std::path::Path,
        telemetry: &Telemetry,
        registries: &Registries,
    ) -> Result<Self, ConfigError> {
        Self::build(&ConfigFile::load(path)?, telemetry, registries)
    }
}

impl Snapshot {
    /// Certificates and CRLs that expire (or are stale) within the warning window.
    pub fn expiry_warnings(&self, now: i64) -> Vec<String> {
        let window = self.telemetry.expiry_window.as_secs() as i64;
        let mut out = Vec::new();
        let days = |t: i64| (t - now) as f64 / 86400.0;
        let cert = self.tls.server_cert.not_after;
        if cert <= now {
            out.push(format!("server certificate expired at {}", fmt_time(cert)));
        } else if cert - now <= window {
            out.push(format!(
                "server certificate expires at {} (in {:.1} days)",
                fmt_time(cert),
                days(cert)
            ));
        }
        for c in &self.tls.crls {
            let Some(next) = c.crl.next_update else {
                continue;
            };
            if next <= now {
                out.push(format!(
                    "CRL {} is past its nextUpdate ({})",
                    c.source,
                    fmt_time(next)
                ));
            } else if next - now <= window {
                out.push(format!(
                    "CRL {} reaches its nextUpdate at {} (in {:.1} days): republish it",
                    c.source,
                    fmt_time(next),
                    days(next)
                ));
            }
        }
        out
    }

    /// Whether a CRL in force lists the certificate `serial` (raw bytes) of `issuer` (RFC
    /// 4514) — a pending CRL once a client's CA verified it. For reports, not handshakes.
    pub fn crl_lists(&self, issuer: &str, serial: &[u8]) -> bool {
        self.tls.crls.iter().any(|c| {
            c.crl.issuer == issuer
                && c.crl.pending.as_ref().is_none_or(|p| p.verified_any())
                && c.crl.serials.contains(serial)
        })
    }

    /// Marks revoked the inventory's certificates that a CRL in force lists: a certificate
    /// revoked after it was seen shows as `revoked` in reports and metrics.
    pub fn mark_revoked_credentials(&self, inventory: &crate::inventory::Inventory, now: i64) {
        if !self.tls.crls.is_empty() {
            inventory.mark_listed_revoked(|issuer, serial| self.crl_lists(issuer, serial), now);
        }
    }

    /// Publishes the gauges that describe this snapshot (call when it goes live).
    pub fn publish(&self, metrics: &Metrics) {
        metrics
            .server_cert_expiry
            .set(self.tls.server_cert.not_after);
        let files: Vec<(String, Option<i64>)> = self
            .tls
            .crls
            .iter()
            .map(|c| (c.source.clone(), c.crl.next_update))
            .collect();
        metrics.set_crl_next_updates(files.iter().map(|(f, t)| (f.as_str(), *t)));
        metrics.set_crl_usable(
            self.tls
                .crl_checks
                .usable
                .iter()
                .map(|(source, ok)| (source.as_str(), *ok)),
        );
    }
}

impl Snapshot {
    /// The key sets of the issuers whose JWKS is fetched from a URL.
    pub fn remote_jwks(
        &self,
    ) -> impl Iterator<Item = &Arc<crate::authn::token::remote::RemoteJwks>> {
        self.identity
            .token_issuers
            .iter()
            .filter_map(|i| i.remote.as_ref())
    }
}
