//! The TOML configuration as operators write it (see `config/certgate.toml` for every key).
//!
//! These structs are the *raw* form: they mirror the file one to one, reject unknown keys, and
//! carry no meaning beyond types. `Snapshot::build` (in `state`) compiles them into runtime
//! values that cannot represent an invalid state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Environment variable consulted when `--config` is not given.
pub const CONFIG_ENV: &str = "CERTGATE_CONFIG";

/// A configuration problem, always naming the file, and for invalid values the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

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
}

fn default_request_body_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    Require,
    Optional,
}

impl ClientAuthMode {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::Optional => "optional",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationScope {
    #[default]
    Chain,
    EndEntity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownRevocation {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    #[default]
    Deny,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub mode: ClientAuthMode,
    pub trust_store: Vec<PathBuf>,
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    #[serde(default)]
    pub revocation_scope: RevocationScope,
    #[serde(default)]
    pub unknown_revocation: UnknownRevocation,
    #[serde(default)]
    pub stale_crl: StaleCrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_bind")]
    pub bind: SocketAddr,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            bind: default_admin_bind(),
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
}

impl Default for RawInventory {
    fn default() -> Self {
        Self {
            max_entries: default_inventory_max(),
            path: None,
            flush_interval: default_inventory_flush(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: prior knowledge for `http://`, ALPN for `https://`.
    H2,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub path_prefix: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub allow: Vec<RawMatcher>,
    #[serde(default)]
    pub deny: Vec<RawMatcher>,
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Overrides the upstream's `timeout` for this route.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest request body forwarded; larger gets 413 (counted while streaming).
    #[serde(default = "default_max_body")]
    pub max_request_body: bytesize::ByteSize,
    /// Accept `;` parameters in path segments (Java-style `;jsessionid=`); policy then matches
    /// the path without them. Off: such a path is 400.
    #[serde(default)]
    pub allow_path_params: bool,
}

/// One allow/deny entry: every key present must match (AND).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatcher {
    pub uri: Option<String>,
    pub dns: Option<String>,
    pub email: Option<String>,
    pub cn: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub issuer_cn: Option<String>,
    pub sha256: Option<String>,
    pub any: Option<bool>,
}

fn default_true() -> bool {
    true
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_expiry_window() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn default_max_header_bytes() -> bytesize::ByteSize {
    bytesize::ByteSize::kib(64)
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_streams() -> u32 {
    100
}
fn default_max_body() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(100)
}
fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_hc_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_unhealthy_threshold() -> u32 {
    2
}
fn default_healthy_threshold() -> u32 {
    1
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_retries() -> u32 {
    2
}
fn default_eject_after() -> u32 {
    5
}
fn default_ejection_time() -> Duration {
    Duration::from_secs(30)
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_inventory_max() -> usize {
    10_000
}
fn default_inventory_flush() -> Duration {
    Duration::from_secs(60)
}
fn default_admin_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A parsed config file together with where it came from.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub raw: RawConfig,
}

impl ConfigFile {
    /// Reads and parses `path`. Errors name the file and, for TOML errors, line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw = toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            raw,
        })
    }

    /// Resolves a path from the file relative to the config file's own directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// An [`ConfigError::Invalid`] for this file.
    pub fn invalid(&self, key: impl Into<String>, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.clone(),
            key: key.into(),
            problem: problem.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[listener]
bind = "127.0.0.1:8443"
cert = "server.pem"
key = "server-key.pem"

[client_auth]
mode = "require"
trust_store = ["ca.pem"]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let f = ConfigFile::parse(Path::new("/etc/certgate/certgate.toml"), MINIMAL).unwrap();
        assert_eq!(f.raw.admin.bind, default_admin_bind());
        assert_eq!(f.raw.listener.drain_timeout, Duration::from_secs(30));
        assert_eq!(f.raw.client_auth.stale_crl, StaleCrl::Deny);
        assert_eq!(
            f.resolve(Path::new("server.pem")),
            PathBuf::from("/etc/certgate/server.pem")
        );
        assert_eq!(f.resolve(Path::new("/abs.pem")), PathBuf::from("/abs.pem"));
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let text = format!("{MINIMAL}\n[admin]\nbindd = \"127.0.0.1:1\"\n");
        let err = ConfigFile::parse(Path::new("c.toml"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml: "), "{msg}");
        assert!(msg.contains("bindd"), "{msg}");
        assert!(msg.contains("line 12"), "{msg}");
    }

    /// The documented reference must stay loadable: every key in it is one the code knows.
    #[test]
    fn reference_config_parses() {
        let text = include_str!("../../config/certgate.toml");
        let f = ConfigFile::parse(Path::new("config/certgate.toml"), text).unwrap();
        assert_eq!(f.raw.routes.len(), 2);
        assert!(f.raw.routes[0].timeout.is_some());
        assert_eq!(f.raw.client_auth.revocation_scope, RevocationScope::Chain);
        assert_eq!(f.raw.log.format, LogFormat::Auto);
        assert!(f.raw.inventory.path.is_some());
        assert_eq!(
            f.raw.upstreams["ledger"].endpoints.as_ref().map(Vec::len),
            Some(2)
        );
        assert!(f.raw.upstreams["ledger"].health_check.is_some());
        assert_eq!(f.raw.routes[0].max_request_body.as_u64(), 100 * 1024 * 1024);
        assert!(f.raw.reload.watch);
        assert_eq!(f.raw.expiry.warning_window, Duration::from_secs(7 * 86400));
    }
}
