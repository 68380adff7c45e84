//! The defaults of the config keys that have one (the reference: `config/certgate.toml`).

use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn default_request_body_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_expiry_window() -> Duration {
    Duration::from_secs(7 * 86400)
}

pub(super) fn default_max_connections() -> usize {
    10_000
}

pub(super) fn default_max_body() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(100)
}

pub(super) fn default_hc_timeout() -> Duration {
    Duration::from_secs(2)
}

pub(super) fn default_healthy_threshold() -> u32 {
    1
}

pub(super) fn default_retries() -> u32 {
    2
}

pub(super) fn default_ejection_time() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_inventory_max() -> usize {
    10_000
}

pub(super) fn default_admin_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

pub(super) fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}

pub(super) fn default_listener_idle_timeout() -> Duration {
    Duration::from_secs(180)
}

pub(super) fn default_h2_keepalive_interval() -> Duration {
    Duration::from_secs(60)
}

pub(super) fn default_h2_keepalive_timeout() -> Duration {
    Duration::from_secs(20)
}

pub(super) fn default_h2_max_pending_accept_reset_streams() -> usize {
    20
}

pub(super) fn default_h2_max_local_error_reset_streams() -> usize {
    1024
}

pub(super) fn default_h2_max_pings_per_second() -> u32 {
    1000
}

pub(super) fn default_max_streams() -> u32 {
    100
}

pub(super) fn default_unhealthy_threshold() -> u32 {
    2
}

pub(super) fn default_eject_after() -> u32 {
    5
}

pub(super) fn default_inventory_flush() -> Duration {
    Duration::from_secs(60)
}

pub(super) fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_max_header_bytes() -> bytesize::ByteSize {
    bytesize::ByteSize::kib(64)
}

pub(super) fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

pub(super) fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

pub(super) fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}

pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

pub(super) fn default_log_level() -> String {
    "info".to_string()
}

pub(super) fn default_crl_max_bytes() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(64)
}

pub(super) fn default_crl_refresh() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn default_crl_cache_dir() -> std::path::PathBuf {
    "/var/lib/certgate/crls".into()
}

pub(super) fn default_ocsp_timeout() -> Duration {
    Duration::from_secs(2)
}

pub(super) fn default_ocsp_max_age() -> Duration {
    Duration::from_secs(3600)
}

pub(super) fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn default_token_leeway() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_token_algorithms() -> Vec<String> {
    ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
