//! Every metric family certgate exports, as a table: name, help and labels. `Metrics::new`
//! registers each from here, so a family is defined in one place.

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// One metric family: name, help, label names (none for a plain counter or gauge).
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn family(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family { name, help, labels }
}

/// Latency buckets for a proxy: 100 µs … 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub(super) const REQUESTS: Family = family(
    "certgate_requests_total",
    "Requests answered, by route, method and status code.",
    &["route", "method", "code"],
);
pub(super) const REQUEST_DURATION: Family = family(
    "certgate_request_duration_seconds",
    "Time from request head to the end of the response body, by route.",
    &["route"],
);
pub(super) const AUTHZ_DECISIONS: Family = family(
    "certgate_authz_decisions_total",
    "Authorisation decisions by route and decision.",
    &["route", "decision"],
);
pub(super) const RECEIVED_BYTES: Family = family(
    "certgate_request_body_bytes_total",
    "Request body bytes received from clients and forwarded, by route.",
    &["route"],
);
pub(super) const SENT_BYTES: Family = family(
    "certgate_response_body_bytes_total",
    "Response body bytes sent to clients, by route.",
    &["route"],
);
pub(super) const UPSTREAM_REQUESTS: Family = family(
    "certgate_upstream_requests_total",
    "Requests forwarded to upstreams, by upstream and outcome.",
    &["upstream", "outcome"],
);
pub(super) const UPSTREAM_DURATION: Family = family(
    "certgate_upstream_request_duration_seconds",
    "Time until the upstream's response head, by upstream.",
    &["upstream"],
);
pub(super) const UPSTREAM_RETRIES: Family = family(
    "certgate_upstream_retries_total",
    "Extra attempts sent to another (or the same) endpoint, by upstream.",
    &["upstream"],
);
pub(super) const UPSTREAM_EJECTIONS: Family = family(
    "certgate_upstream_ejections_total",
    "Endpoints ejected by passive outlier detection, by upstream.",
    &["upstream"],
);
pub(super) const UPSTREAM_CONNECTIONS: Family = family(
    "certgate_upstream_connections_opened_total",
    "Connections opened to upstream endpoints (reuse keeps this low), by upstream.",
    &["upstream"],
);
pub(super) const LIMIT_HITS: Family = family(
    "certgate_limit_hits_total",
    "Requests or connections stopped by a limit, by limit.",
    &["limit"],
);
pub(super) const TLS_HANDSHAKES: Family = family(
    "certgate_tls_handshakes_total",
    "TLS handshakes by result.",
    &["result"],
);
pub(super) const ACTIVE_CONNECTIONS: Family = family(
    "certgate_active_connections",
    "Open client connections.",
    &[],
);
pub(super) const RELOADS: Family = family(
    "certgate_config_reloads_total",
    "Configuration reloads by result.",
    &["result"],
);
pub(super) const SERVER_CERT_EXPIRY: Family = family(
    "certgate_server_cert_expiry_timestamp_seconds",
    "notAfter of the server certificate in use (Unix time).",
    &[],
);
pub(super) const CRL_NEXT_UPDATE: Family = family(
    "certgate_crl_next_update_timestamp_seconds",
    "nextUpdate of each loaded CRL (Unix time), by file.",
    &["file"],
);
pub(super) const CLIENT_CERTS_EXPIRING: Family = family(
    "certgate_client_certs_expiring",
    "Client certificates in the inventory that expire within the window (expired ones included).",
    &["within"],
);
pub(super) const INVENTORY_IDENTITIES: Family = family(
    "certgate_inventory_identities",
    "Distinct client certificates in the inventory.",
    &[],
);
pub(super) const INVENTORY_EVICTIONS: Family = family(
    "certgate_inventory_evictions_total",
    "Inventory entries evicted (least recently seen) to stay under max_entries.",
    &[],
);
pub(super) const RATE_LIMITED: Family = family(
    "certgate_rate_limited_total",
    "Requests refused by a limit, by route and kind (rate, quota; would_rate, would_quota on audit routes).",
    &["route", "kind"],
);
pub(super) const SHADOW_DECISIONS: Family = family(
    "certgate_shadow_decisions_total",
    "Decisions of routes' shadow (candidate) policies, never enforced, by route and decision.",
    &["route", "decision"],
);
pub(super) const TOKEN_VALIDATIONS: Family = family(
    "certgate_token_validations_total",
    "Access-token checks by issuer and result.",
    &["issuer", "result"],
);
pub(super) const JWKS_FETCHES: Family = family(
    "certgate_jwks_fetches_total",
    "JWKS fetches from URLs by issuer and result (ok, not_modified, error, invalid, too_large).",
    &["issuer", "result"],
);
pub(super) const UPSTREAM_CREDENTIAL_FETCHES: Family = family(
    "certgate_upstream_credential_fetches_total",
    "Access tokens fetched for upstream credentials, by credential and result (ok, error, rejected, invalid).",
    &["credential", "result"],
);
pub(super) const CRL_FETCHES: Family = family(
    "certgate_crl_fetches_total",
    "CRL fetches from crl_urls by source and result (ok, not_modified, error, invalid, too_large).",
    &["source", "result"],
);
pub(super) const OCSP_CHECKS: Family = family(
    "certgate_ocsp_checks_total",
    "OCSP status of client certificates, checked once per connection, by result (good, revoked, unknown, error, invalid; cached: answered from the cache).",
    &["result"],
);
pub(super) const ANOMALIES: Family = family(
    "certgate_anomalies_total",
    "Anomaly signals raised, by kind (shared_credential, denial_burst, rate_spike, new_route).",
    &["kind"],
);
pub(super) const LIMIT_BACKEND_ERRORS: Family = family(
    "certgate_limit_backend_errors_total",
    "Rate-limit checks the shared backend (Redis) did not answer in time, by reason (timeout, error).",
    &["reason"],
);
pub(super) const CREDENTIALS: Family = family(
    "certgate_credentials",
    "Credentials in the register by kind (certificate, api_key, token_client, token_key, upstream_credential), owner (unowned for none) and state (active, expiring within [expiry] warning_window, expired, sunset, revoked).",
    &["kind", "owner", "state"],
);
pub(super) const INVENTORY_SYNC: Family = family(
    "certgate_inventory_sync_total",
    "Fleet inventory (PostgreSQL) syncs by result (ok, error).",
    &["result"],
);
pub(super) const INVENTORY_PENDING_ROWS: Family = family(
    "certgate_inventory_pending_rows",
    "Credential × route rows counted here and not yet in the fleet inventory.",
    &[],
);
pub(super) const API_KEY_REQUESTS: Family = family(
    "certgate_api_key_requests_total",
    "Requests that presented a legacy API key, by result (ok, malformed, unknown, revoked, sunset, cut_over, dual_use, in_query).",
    &["result"],
);
pub(super) const CRL_USABLE: Family = family(
    "certgate_crl_usable",
    "1 when the configured CRL source is usable, 0 when it is not (bad signature, unknown critical extension, untrusted issuer, unparseable).",
    &["source"],
);

/// Makes each family and registers it; the definitions are static, so a failure is a bug.
pub(super) struct Registrar(pub Registry);

impl Registrar {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("metric names are unique");
        c
    }

    fn opts(f: &Family) -> Opts {
        Opts::new(f.name, f.help)
    }

    pub fn counters(&self, f: &Family) -> IntCounterVec {
        self.add(IntCounterVec::new(Self::opts(f), f.labels).expect("static metric definition"))
    }

    pub fn counter(&self, f: &Family) -> IntCounter {
        self.add(IntCounter::with_opts(Self::opts(f)).expect("static metric definition"))
    }

    pub fn gauges(&self, f: &Family) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Self::opts(f), f.labels).expect("static metric definition"))
    }

    pub fn gauge(&self, f: &Family) -> IntGauge {
        self.add(IntGauge::with_opts(Self::opts(f)).expect("static metric definition"))
    }

    /// Latency histograms ([`LATENCY_BUCKETS`]).
    pub fn histograms(&self, f: &Family) -> HistogramVec {
        let opts = HistogramOpts::new(f.name, f.help).buckets(LATENCY_BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, f.labels).expect("static metric definition"))
    }
}
