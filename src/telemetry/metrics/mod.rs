//! Prometheus metrics. Every label set is bounded (route and upstream names from config, fixed
//! enums), and the per-request path uses handles resolved ahead of time: recording a request is a
//! handful of atomic operations, with no lock and no allocation.

use prometheus::{
    Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

use crate::authn::tls::HandshakeResult;

mod families;
mod gauges;
mod limit;
mod route;
mod upstream;

pub use limit::Limit;
use route::RouteFamilies;
pub use route::{RouteMetrics, method_label};
pub use upstream::{UpstreamMetrics, UpstreamOutcome};

/// The `result` labels of `certgate_api_key_requests_total`, all visible from the start.
pub const API_KEY_RESULTS: [&str; 8] = [
    "ok",
    "malformed",
    "unknown",
    "revoked",
    "sunset",
    "cut_over",
    "dual_use",
    "in_query",
];

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

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
    upstream_credential_fetches: IntCounterVec,
    ocsp_checks: IntCounterVec,
    anomalies: IntCounterVec,
    limit_backend_errors: IntCounterVec,
    credentials: IntGaugeVec,
    crl_usable: IntGaugeVec,
    pub inventory_sync_ok: IntCounter,
    pub inventory_sync_error: IntCounter,
    pub inventory_pending_rows: IntGauge,
    /// `certgate_api_key_requests_total`, by [`API_KEY_RESULTS`] index.
    api_key_requests: [IntCounter; API_KEY_RESULTS.len()],
    /// Handles for requests that matched no route.
    pub unrouted: RouteMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        use families as f;
        let r = f::Registrar(Registry::new());
        let ocsp_checks = r.counters(&f::OCSP_CHECKS);
        for o in crate::authn::revocation::ocsp::Outcome::ALL {
            ocsp_checks.with_label_values(&[o.label()]);
        }
        ocsp_checks.with_label_values(&["cached"]);
        // Every limit, handshake, reload and sync result is visible from the start, at 0.
        let limit_hits = r.counters(&f::LIMIT_HITS);
        let tls = r.counters(&f::TLS_HANDSHAKES);
        let reloads = r.counters(&f::RELOADS);
        let inventory_sync = r.counters(&f::INVENTORY_SYNC);
        let route_families = RouteFamilies {
            requests_total: r.counters(&f::REQUESTS),
            request_duration: r.histograms(&f::REQUEST_DURATION),
            authz_decisions_total: r.counters(&f::AUTHZ_DECISIONS),
            received_bytes: r.counters(&f::RECEIVED_BYTES),
            sent_bytes: r.counters(&f::SENT_BYTES),
            rate_limited: r.counters(&f::RATE_LIMITED),
            shadow_decisions: r.counters(&f::SHADOW_DECISIONS),
        };
        Self {
            unrouted: route_families.route(NO_ROUTE),
            route_families,
            upstream_requests_total: r.counters(&f::UPSTREAM_REQUESTS),
            upstream_duration: r.histograms(&f::UPSTREAM_DURATION),
            upstream_retries: r.counters(&f::UPSTREAM_RETRIES),
            upstream_ejections: r.counters(&f::UPSTREAM_EJECTIONS),
            upstream_connections: r.counters(&f::UPSTREAM_CONNECTIONS),
            limits: Limit::ALL.map(|l| limit_hits.with_label_values(&[l.label()])),
            handshakes: HandshakeResult::ALL
                .iter()
                .map(|h| tls.with_label_values(&[h.label()]))
                .collect(),
            active_connections: r.gauge(&f::ACTIVE_CONNECTIONS),
            config_reloads_ok: reloads.with_label_values(&["ok"]),
            config_reloads_error: reloads.with_label_values(&["error"]),
            server_cert_expiry: r.gauge(&f::SERVER_CERT_EXPIRY),
            crl_next_update: r.gauges(&f::CRL_NEXT_UPDATE),
            client_certs_expiring: r.gauges(&f::CLIENT_CERTS_EXPIRING),
            inventory_identities: r.gauge(&f::INVENTORY_IDENTITIES),
            inventory_evictions: r.counter(&f::INVENTORY_EVICTIONS),
            token_validations: r.counters(&f::TOKEN_VALIDATIONS),
            jwks_fetches: r.counters(&f::JWKS_FETCHES),
            crl_fetches: r.counters(&f::CRL_FETCHES),
            upstream_credential_fetches: r.counters(&f::UPSTREAM_CREDENTIAL_FETCHES),
            ocsp_checks,
            anomalies: r.counters(&f::ANOMALIES),
            limit_backend_errors: r.counters(&f::LIMIT_BACKEND_ERRORS),
            credentials: r.gauges(&f::CREDENTIALS),
            crl_usable: r.gauges(&f::CRL_USABLE),
            inventory_sync_ok: inventory_sync.with_label_values(&["ok"]),
            inventory_sync_error: inventory_sync.with_label_values(&["error"]),
            inventory_pending_rows: r.gauge(&f::INVENTORY_PENDING_ROWS),
            api_key_requests: {
                let family = r.counters(&f::API_KEY_REQUESTS);
                API_KEY_RESULTS.map(|result| family.with_label_values(&[result]))
            },
            registry: r.0,
        }
    }

    /// Counts one request that presented an API key, by its result label.
    pub fn api_key_request(&self, result: &str) {
        if let Some(i) = API_KEY_RESULTS.iter().position(|r| *r == result) {
            self.api_key_requests[i].inc();
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

    /// The `certgate_upstream_credential_fetches_total` handle of one credential and result.
    pub fn upstream_credential_fetch(&self, credential: &str, result: &str) -> IntCounter {
        self.upstream_credential_fetches
            .with_label_values(&[credential, result])
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
