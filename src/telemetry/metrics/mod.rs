//! Prometheus metrics. Every label set is bounded (route and upstream names from config, fixed
//! enums), and the per-request path uses handles resolved ahead of time: recording a request is a
//! handful of atomic operations, with no lock and no allocation.

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::authn::tls::HandshakeResult;

mod gauges;
mod limit;
mod route;
mod upstream;

pub use limit::Limit;
use route::RouteFamilies;
pub use route::{RouteMetrics, method_label};
pub use upstream::{UpstreamMetrics, UpstreamOutcome};

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

/// Latency buckets for a proxy: 100 µs … 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Process-wide metrics; survives config reloads.
pub struct Metrics {
    registry: Registry,
    route_families: RouteFamilies,
    upstream_requests_total: IntCounterVec,
    upstream_duration: HistogramVec,
    upstream_retries: IntCounterVec,
    upstream_ejections: IntCounterVec,
    upstream_connections: IntCounterVec,
    limits: [IntCounter; 10],
    handshakes: Vec<IntCounter>,
    pub active_connections: IntGauge,
    pub config_reloads_ok: IntCounter,
    pub config_reloads_error: IntCounter,
    pub server_cert_expiry: IntGauge,
    crl_next_update: IntGaugeVec,
    pub client_certs_expiring: IntGaugeVec,
    pub inventory_identities: IntGauge,
    pub inventory_evictions: IntCounter,
    token_validations: IntCounterVec,
    jwks_fetches: IntCounterVec,
    crl_fetches: IntCounterVec,
    ocsp_checks: IntCounterVec,
    anomalies: IntCounterVec,
    limit_backend_errors: IntCounterVec,
    credentials: IntGaugeVec,
    crl_usable: IntGaugeVec,
    pub inventory_sync_ok: IntCounter,
    pub inventory_sync_error: IntCounter,
    pub inventory_pending_rows: IntGauge,
    /// Handles for requests that matched no route.
    pub unrouted: RouteMetrics,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let requests_total = counter_vec(
            "certgate_requests_total",
            "Requests answered, by route, method and status code.",
            &["route", "method", "code"],
        );
        let request_duration = histogram_vec(
            "certgate_request_duration_seconds",
            "Time from request head to the end of the response body, by route.",
            &["route"],
        );
        let authz_decisions_total = counter_vec(
            "certgate_authz_decisions_total",
            "Authorisation decisions by route and decision.",
            &["route", "decision"],
        );
        let received_bytes = counter_vec(
            "certgate_request_body_bytes_total",
            "Request body bytes received from clients and forwarded, by route.",
            &["route"],
        );
        let sent_bytes = counter_vec(
            "certgate_response_body_bytes_total",
            "Response body bytes sent to clients, by route.",
            &["route"],
        );
        let upstream_requests_total = counter_vec(
            "certgate_upstream_requests_total",
            "Requests forwarded to upstreams, by upstream and outcome.",
            &["upstream", "outcome"],
        );
        let upstream_duration = histogram_vec(
            "certgate_upstream_request_duration_seconds",
            "Time until the upstream's response head, by upstream.",
            &["upstream"],
        );
        let upstream_retries = counter_vec(
            "certgate_upstream_retries_total",
            "Extra attempts sent to another (or the same) endpoint, by upstream.",
            &["upstream"],
        );
        let upstream_ejections = counter_vec(
            "certgate_upstream_ejections_total",
            "Endpoints ejected by passive outlier detection, by upstream.",
            &["upstream"],
        );
        let upstream_connections = counter_vec(
            "certgate_upstream_connections_opened_total",
            "Connections opened to upstream endpoints (reuse keeps this low), by upstream.",
            &["upstream"],
        );
        let limit_hits = counter_vec(
            "certgate_limit_hits_total",
            "Requests or connections stopped by a limit, by limit.",
            &["limit"],
        );
        let tls = counter_vec(
            "certgate_tls_handshakes_total",
            "TLS handshakes by result.",
            &["result"],
        );
        let active_connections =
            IntGauge::new("certgate_active_connections", "Open client connections.")
                .expect("static metric definition");
        let reloads = counter_vec(
            "certgate_config_reloads_total",
            "Configuration reloads by result.",
            &["result"],
        );
        let server_cert_expiry = IntGauge::new(
            "certgate_server_cert_expiry_timestamp_seconds",
            "notAfter of the server certificate in use (Unix time).",
        )
        .expect("static metric definition");
        let crl_next_update = IntGaugeVec::new(
            Opts::new(
                "certgate_crl_next_update_timestamp_seconds",
                "nextUpdate of each loaded CRL (Unix time), by file.",
            ),
            &["file"],
        )
        .expect("static metric definition");
        let client_certs_expiring = IntGaugeVec::new(
            Opts::new(
                "certgate_client_certs_expiring",
                "Client certificates in the inventory that expire within the window (expired ones included).",
            ),
            &["within"],
        )
        .expect("static metric definition");
        let inventory_identities = IntGauge::new(
            "certgate_inventory_identities",
            "Distinct client certificates in the inventory.",
        )
        .expect("static metric definition");
        let inventory_evictions = IntCounter::new(
            "certgate_inventory_evictions_total",
            "Inventory entries evicted (least recently seen) to stay under max_entries.",
        )
        .expect("static metric definition");

        let rate_limited = counter_vec(
            "certgate_rate_limited_total",
            "Requests refused by a limit, by route and kind (rate, quota; would_rate, would_quota on audit routes).",
            &["route", "kind"],
        );
        let shadow_decisions = counter_vec(
            "certgate_shadow_decisions_total",
            "Decisions of routes' shadow (candidate) policies, never enforced, by route and decision.",
            &["route", "decision"],
        );
        let token_validations = counter_vec(
            "certgate_token_validations_total",
            "Access-token checks by issuer and result.",
            &["issuer", "result"],
        );
        let jwks_fetches = counter_vec(
            "certgate_jwks_fetches_total",
            "JWKS fetches from URLs by issuer and result (ok, not_modified, error, invalid, too_large).",
            &["issuer", "result"],
        );
        let crl_fetches = counter_vec(
            "certgate_crl_fetches_total",
            "CRL fetches from crl_urls by source and result (ok, not_modified, error, invalid, too_large).",
            &["source", "result"],
        );
        let ocsp_checks = counter_vec(
            "certgate_ocsp_checks_total",
            "OCSP status of client certificates, checked once per connection, by result (good, revoked, unknown, error, invalid; cached: answered from the cache).",
            &["result"],
        );
        for o in crate::authn::revocation::ocsp::Outcome::ALL {
            ocsp_checks.with_label_values(&[o.label()]);
        }
        ocsp_checks.with_label_values(&["cached"]);
        let anomalies = counter_vec(
            "certgate_anomalies_total",
            "Anomaly signals raised, by kind (shared_credential, denial_burst, rate_spike, new_route).",
            &["kind"],
        );
        let limit_backend_errors = counter_vec(
            "certgate_limit_backend_errors_total",
            "Rate-limit checks the shared backend (Redis) did not answer in time, by reason (timeout, error).",
            &["reason"],
        );
        let credentials = IntGaugeVec::new(
            Opts::new(
                "certgate_credentials",
                "Client certificates in the inventory by owner (unowned for none) and state (active, expiring within [expiry] warning_window, expired, revoked).",
            ),
            &["owner", "state"],
        )
        .expect("static metric definition");

        let inventory_sync = counter_vec(
            "certgate_inventory_sync_total",
            "Fleet inventory (PostgreSQL) syncs by result (ok, error).",
            &["result"],
        );
        let inventory_pending_rows = IntGauge::new(
            "certgate_inventory_pending_rows",
            "Credential × route rows counted here and not yet in the fleet inventory.",
        )
        .expect("static metric definition");

        let crl_usable = IntGaugeVec::new(
            Opts::new(
                "certgate_crl_usable",
                "1 when the configured CRL source is usable, 0 when it is not (bad signature, unknown critical extension, untrusted issuer, unparseable).",
            ),
            &["source"],
        )
        .expect("static metric definition");

        let registry = Registry::new();
        let collectors: [Box<dyn Collector>; 31] = [
            Box::new(crl_usable.clone()),
            Box::new(inventory_sync.clone()),
            Box::new(inventory_pending_rows.clone()),
            Box::new(credentials.clone()),
            Box::new(anomalies.clone()),
            Box::new(limit_backend_errors.clone()),
            Box::new(shadow_decisions.clone()),
            Box::new(rate_limited.clone()),
            Box::new(token_validations.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(crl_fetches.clone()),
            Box::new(ocsp_checks.clone()),
            Box::new(upstream_retries.clone()),
            Box::new(upstream_ejections.clone()),
            Box::new(upstream_connections.clone()),
            Box::new(limit_hits.clone()),
            Box::new(requests_total.clone()),
            Box::new(request_duration.clone()),
            Box::new(authz_decisions_total.clone()),
            Box::new(received_bytes.clone()),
            Box::new(sent_bytes.clone()),
            Box::new(upstream_requests_total.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(tls.clone()),
            Box::new(active_connections.clone()),
            Box::new(reloads.clone()),
            Box::new(server_cert_expiry.clone()),
            Box::new(crl_next_update.clone()),
            Box::new(client_certs_expiring.clone()),
            Box::new(inventory_identities.clone()),
            Box::new(inventory_evictions.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        // Every handshake result and reload result is visible from the start, at 0.
        let limits = Limit::ALL.map(|l| limit_hits.with_label_values(&[l.label()]));
        let handshakes = HandshakeResult::ALL
            .iter()
            .map(|r| tls.with_label_values(&[r.label()]))
            .collect();
        let route_families = RouteFamilies {
            requests_total,
            request_duration,
            authz_decisions_total,
            received_bytes,
            sent_bytes,
            rate_limited,
            shadow_decisions,
        };
        Self {
            registry,
            unrouted: route_families.route(NO_ROUTE),
            route_families,
            upstream_requests_total,
            upstream_duration,
            upstream_retries,
            upstream_ejections,
            upstream_connections,
            limits,
            handshakes,
            active_connections,
            config_reloads_ok: reloads.with_label_values(&["ok"]),
            config_reloads_error: reloads.with_label_values(&["error"]),
            server_cert_expiry,
            crl_next_update,
            client_certs_expiring,
            inventory_identities,
            inventory_evictions,
            token_validations,
            jwks_fetches,
            crl_fetches,
            ocsp_checks,
            anomalies,
            limit_backend_errors,
            credentials,
            crl_usable,
            inventory_sync_ok: inventory_sync.with_label_values(&["ok"]),
            inventory_sync_error: inventory_sync.with_label_values(&["error"]),
            inventory_pending_rows,
        }
    }

    /// The `certgate_anomalies_total` handle of one kind.
    pub fn anomaly(&self, kind: &str) -> IntCounter {
        self.anomalies.with_label_values(&[kind])
    }

    /// The `certgate_limit_backend_errors_total` handle of one reason.
    pub fn limit_backend_error(&self, reason: &str) -> IntCounter {
        self.limit_backend_errors.with_label_values(&[reason])
    }

    /// The `certgate_token_validations_total` handle of one issuer and result.
    pub fn token_validation(&self, issuer: &str, result: &str) -> IntCounter {
        self.token_validations.with_label_values(&[issuer, result])
    }

    /// The `certgate_jwks_fetches_total` handle of one issuer and result.
    pub fn jwks_fetch(&self, issuer: &str, result: &str) -> IntCounter {
        self.jwks_fetches.with_label_values(&[issuer, result])
    }

    /// The `certgate_crl_fetches_total` handle of one CRL URL and result.
    pub fn crl_fetch(&self, source: &str, result: &str) -> IntCounter {
        self.crl_fetches.with_label_values(&[source, result])
    }

    /// The `certgate_ocsp_checks_total` handle of one result.
    pub fn ocsp_check(&self, result: &str) -> IntCounter {
        self.ocsp_checks.with_label_values(&[result])
    }

    /// Pre-resolved handles for one route (call at config load).
    pub fn route(&self, name: &str) -> RouteMetrics {
        self.route_families.route(name)
    }

    /// Pre-resolved handles for one upstream (call at config load).
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            outcomes: UpstreamOutcome::ALL.map(|o| {
                self.upstream_requests_total
                    .with_label_values(&[name, o.label()])
            }),
            duration: self.upstream_duration.with_label_values(&[name]),
            retries: self.upstream_retries.with_label_values(&[name]),
            ejections: self.upstream_ejections.with_label_values(&[name]),
            connections: self.upstream_connections.with_label_values(&[name]),
        }
    }

    /// Counts one hit of a limit.
    pub fn limit_hit(&self, limit: Limit) {
        let i = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.limits[i].inc();
    }

    pub fn handshake(&self, result: HandshakeResult) {
        let i = HandshakeResult::ALL.iter().position(|r| *r == result);
        if let Some(c) = i.and_then(|i| self.handshakes.get(i)) {
            c.inc();
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16384);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, StatusCode};
    use std::time::Duration;

    fn value(m: &Metrics, series: &str) -> Option<f64> {
        let text = String::from_utf8(m.render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn cached_and_uncached_codes_count_into_the_same_series() {
        let m = Metrics::new();
        let r = m.route("api");
        for _ in 0..3 {
            r.finished(
                &Method::GET,
                StatusCode::OK,
                Duration::from_micros(300),
                10,
                20,
            );
        }
        r.finished(
            &Method::GET,
            StatusCode::IM_A_TEAPOT,
            Duration::from_millis(2),
            0,
            0,
        );
        r.finished(
            &Method::from_bytes(b"PURGE").unwrap(),
            StatusCode::OK,
            Duration::ZERO,
            0,
            0,
        );
        // A second handle set for the same route (as after a reload) shares the series.
        m.route("api")
            .finished(&Method::GET, StatusCode::OK, Duration::ZERO, 0, 0);
        let v = |s: &str| value(&m, s);
        assert_eq!(
            v(r#"certgate_requests_total{code="200",method="GET",route="api"}"#),
            Some(4.0)
        );
        assert_eq!(
            v(r#"certgate_requests_total{code="418",method="GET",route="api"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"certgate_requests_total{code="200",method="OTHER",route="api"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"certgate_request_body_bytes_total{route="api"}"#),
            Some(30.0)
        );
        assert_eq!(
            v(r#"certgate_response_body_bytes_total{route="api"}"#),
            Some(60.0)
        );
        assert_eq!(
            v(r#"certgate_request_duration_seconds_count{route="api"}"#),
            Some(6.0)
        );
        assert_eq!(
            v(r#"certgate_request_duration_seconds_bucket{route="api",le="0.0005"}"#),
            Some(5.0)
        );
    }

    #[test]
    fn fixed_label_sets_exist_from_the_start() {
        let m = Metrics::new();
        assert_eq!(
            value(&m, r#"certgate_tls_handshakes_total{result="revoked"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(&m, r#"certgate_config_reloads_total{result="error"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(
                &m,
                r#"certgate_authz_decisions_total{decision="no_route",route="_none"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&m, r#"certgate_ocsp_checks_total{result="revoked"}"#),
            Some(0.0)
        );
    }
}
