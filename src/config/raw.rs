//! The raw config structs, one per TOML table, with their defaults. Unknown keys are errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::client_auth::RawClientAuth;
use super::defaults::*;
use super::routes::RawRoute;
use super::tokens::RawTokenIssuer;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listener: RawListener,
    pub client_auth: RawClientAuth,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub inventory: RawInventory,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub expiry: RawExpiry,
    #[serde(default)]
    pub token_issuers: BTreeMap<String, RawTokenIssuer>,
    #[serde(default)]
    pub limits: super::limits::RawLimits,
    #[serde(default)]
    pub anomaly: super::limits::RawAnomaly,
    #[serde(default)]
    pub owners: super::owners::RawOwners,
    /// `[api_keys]`: legacy static keys, for routes with `api_keys = true`.
    #[serde(default)]
    pub api_keys: Option<super::api_keys::RawApiKeys>,
    /// `[upstream_credentials.NAME]`: secrets the gateway holds for upstreams.
    #[serde(default)]
    pub upstream_credentials: BTreeMap<String, super::api_keys::RawUpstreamCredential>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A TLS handshake that takes longer than this is abandoned.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time allowed for in-flight requests to finish after SIGTERM/SIGINT.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// After SIGTERM, keep accepting this long (with /readyz already 503) so load balancers
    /// can take the instance out before it stops listening.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time allowed for a client to send a complete HTTP/1 request head.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_request_header_bytes: bytesize::ByteSize,
    /// Open client connections; further connections wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams: u32,
    /// Requests served on one connection before it is closed (HTTP/1) or sent GOAWAY
    /// (HTTP/2); 0 = unlimited.
    #[serde(default)]
    pub max_requests_per_connection: u64,
    /// A client that sends nothing of its request body for this long gets 408 (its fault,
    /// never counted against the upstream).
    #[serde(default = "default_request_body_timeout", with = "humantime_serde")]
    pub request_body_timeout: Duration,
    /// Client request headers dropped before forwarding, beside the built-in identity and
    /// forwarding families.
    #[serde(default)]
    pub strip_request_headers: Vec<String>,
    /// How routes match paths: "insensitive" for upstreams that read paths without case
    /// (IIS, Spring's case-insensitive matching), so `/ADMIN` is decided by `/admin`'s route.
    #[serde(default)]
    pub path_case: PathCase,
    /// An HTTP/2 connection with no request for this long is closed (GOAWAY).
    #[serde(default = "default_listener_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive PINGs to the client this often ("0s": none).
    #[serde(default = "default_h2_keepalive_interval", with = "humantime_serde")]
    pub h2_keepalive_interval: Duration,
    /// A keep-alive PING not answered within this closes the connection.
    #[serde(default = "default_h2_keepalive_timeout", with = "humantime_serde")]
    pub h2_keepalive_timeout: Duration,
    /// Streams a client may reset before the server accepted them, at once (rapid reset).
    #[serde(default = "default_h2_max_pending_accept_reset_streams")]
    pub h2_max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because the client erred, before GOAWAY.
    #[serde(default = "default_h2_max_local_error_reset_streams")]
    pub h2_max_local_error_reset_streams: usize,
    /// PING and SETTINGS frames a client may send per second before its connection is cut
    /// (0: no limit).
    #[serde(default = "default_h2_max_pings_per_second")]
    pub h2_max_pings_per_second: u32,
    /// Connections one client certificate may hold open; default half of max_connections,
    /// 0 = unlimited.
    #[serde(default)]
    pub max_connections_per_identity: Option<usize>,
    /// Connections one source IP may hold open (before the handshake); 0 = unlimited.
    #[serde(default)]
    pub max_connections_per_source_ip: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_bind")]
    pub bind: SocketAddr,
    /// Host names (besides loopback names and `bind`) that `/reload`, `/inventory` and
    /// `/anomalies` answer to.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A file holding a bearer token that `/reload`, `/inventory`, `/anomalies` and `/metrics`
    /// then require (`/healthz` and `/readyz` stay open for probes).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A PEM CA bundle: the admin listener then speaks TLS (with `listener.cert`) and the same
    /// endpoints require a client certificate issued by one of these CAs.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            bind: default_admin_bind(),
            allowed_hosts: Vec::new(),
            token_file: None,
            client_ca: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// JSON lines, unless stdout is a terminal.
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `tracing` filter such as `"info"` or `"info,certgate::access=warn"`. `RUST_LOG` wins.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `--log-format` wins.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// Reload automatically when the config or any file it references changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How often referenced files are also checked for changes (a fallback for file systems
    /// where change notifications do not arrive).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            watch: true,
            poll_interval: default_poll_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpiry {
    /// Warn (log, /readyz detail) when the server certificate expires or a CRL's nextUpdate
    /// falls within this window.
    #[serde(default = "default_expiry_window", with = "humantime_serde")]
    pub warning_window: Duration,
}

impl Default for RawExpiry {
    fn default() -> Self {
        Self {
            warning_window: default_expiry_window(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// Distinct client certificates remembered; the least recently seen are evicted beyond it.
    #[serde(default = "default_inventory_max")]
    pub max_entries: usize,
    /// Where the inventory is saved (atomically) and loaded from at start; absent = memory only.
    pub path: Option<PathBuf>,
    #[serde(default = "default_inventory_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The fleet inventory: `postgres://user:password@host:port/db[?sslmode=require]`.
    pub postgres: Option<String>,
    /// Trust for the database's TLS certificate (default: the system roots).
    pub postgres_ca: Option<PathBuf>,
    /// This gateway's name in the fleet inventory (default: the host name).
    pub gateway_id: Option<String>,
}

impl Default for RawInventory {
    fn default() -> Self {
        Self {
            max_entries: default_inventory_max(),
            path: None,
            flush_interval: default_inventory_flush(),
            postgres: None,
            postgres_ca: None,
            gateway_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    /// Power of two choices on in-flight requests.
    LeastRequests,
}

impl LoadBalancing {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequests => "least_requests",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: prior knowledge for `http://`, ALPN for `https://`.
    H2,
}

impl UpstreamProtocol {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2 => "h2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: String,
    #[serde(default = "default_hc_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_hc_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed checks before an endpoint is taken out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Consecutive passed checks before it is put back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// One endpoint (`scheme://host:port`); or use `endpoints`.
    pub url: Option<String>,
    /// Several endpoints of the same scheme, load-balanced.
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub lb: LoadBalancing,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Time allowed for the upstream to start answering (response head).
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Pooled connections idle longer than this are closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Extra attempts for idempotent requests without a body, on connect failure, a broken
    /// pooled connection, or a status in `retry_on_status`; a different endpoint when there is one.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub retry_on_status: Vec<u16>,
    /// Consecutive connect failures or 5xx answers that eject an endpoint.
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// First ejection time; doubles on each repeated ejection, up to 10 times.
    #[serde(default = "default_ejection_time", with = "humantime_serde")]
    pub ejection_time: Duration,
    pub health_check: Option<RawHealthCheck>,
    /// PEM CA bundle for `https://` endpoints; absent = the system roots.
    pub ca: Option<PathBuf>,
    /// Name to send as SNI and verify the upstream certificate against; default: the host.
    pub server_name: Option<String>,
    /// Client certificate (PEM chain) and key the gateway presents to the upstream.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// An `[upstream_credentials.NAME]` the gateway adds to every request to this upstream.
    pub credential: Option<String>,
}

impl RawUpstream {
    /// The files this upstream names (CA, client certificate, client key), as written.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.ca, &self.client_cert, &self.client_key]
            .into_iter()
            .flatten()
    }
}

/// `listener.path_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathCase {
    #[default]
    Sensitive,
    Insensitive,
}
