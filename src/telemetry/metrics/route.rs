//! Per-route handles: requests by method and status, duration, decisions and body bytes,
//! resolved once per route so recording a request takes no lock and no allocation.

use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::authz::Verdict;
use crate::limits::LimitKind;

/// Bounded `method` label: the standard methods, everything else `OTHER`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

pub fn method_label(m: &Method) -> &'static str {
    METHODS[method_index(m)]
}

/// Status codes whose counters are cached per route and method; others take the slower,
/// locking lookup (they are rare by nature).
const CACHED_CODES: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 429,
    431, 500, 502, 503, 504,
];

fn code_index(code: u16) -> Option<usize> {
    CACHED_CODES.iter().position(|c| *c == code)
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Allow,
    Verdict::Deny,
    Verdict::WouldDeny,
    Verdict::Unauthenticated,
    Verdict::NoRoute,
];

/// The labelled families behind [`RouteMetrics`].
pub(super) struct RouteFamilies {
    pub(super) requests_total: IntCounterVec,
    pub(super) request_duration: HistogramVec,
    pub(super) authz_decisions_total: IntCounterVec,
    pub(super) received_bytes: IntCounterVec,
    pub(super) sent_bytes: IntCounterVec,
    pub(super) rate_limited: IntCounterVec,
    pub(super) shadow_decisions: IntCounterVec,
}

impl RouteFamilies {
    pub(super) fn route(&self, name: &str) -> RouteMetrics {
        RouteMetrics {
            name: name.to_string(),
            requests_total: self.requests_total.clone(),
            requests: (0..METHODS.len() * CACHED_CODES.len())
                .map(|_| OnceLock::new())
                .collect(),
            duration: self.request_duration.with_label_values(&[name]),
            decisions: VERDICTS.map(|v| {
                self.authz_decisions_total
                    .with_label_values(&[name, v.label()])
            }),
            bytes_in: self.received_bytes.with_label_values(&[name]),
            bytes_out: self.sent_bytes.with_label_values(&[name]),
            rate_limited: [
                LimitKind::Rate.label(),
                LimitKind::Quota.label(),
                "would_rate",
                "would_quota",
            ]
            .map(|k| self.rate_limited.with_label_values(&[name, k])),
            shadow: ["allow", "deny"].map(|d| self.shadow_decisions.with_label_values(&[name, d])),
        }
    }
}

/// Per-route handles.
pub struct RouteMetrics {
    name: String,
    requests_total: IntCounterVec,
    /// `METHODS × CACHED_CODES` counters, created on first use.
    requests: Box<[OnceLock<IntCounter>]>,
    duration: Histogram,
    decisions: [IntCounter; 5],
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    /// By [`LimitKind::ALL`], enforced then audited (`would_…`).
    rate_limited: [IntCounter; 4],
    /// `shadow_decisions_total{decision=allow|deny}`.
    shadow: [IntCounter; 2],
}

impl RouteMetrics {
    /// Counts a request a limit of the route refused (or, `audit`, would have refused).
    pub fn rate_limited(&self, kind: LimitKind, audit: bool) {
        self.rate_limited_counter(kind, audit).inc();
    }

    /// The `rate_limited_total` handle of one kind, for what counts later (a tunnel closed by
    /// its quota).
    pub fn rate_limited_counter(&self, kind: LimitKind, audit: bool) -> &IntCounter {
        let i = LimitKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.rate_limited[i + if audit { 2 } else { 0 }]
    }

    /// Counts a shadow policy's decision.
    pub fn shadow_decision(&self, allow: bool) {
        self.shadow[usize::from(!allow)].inc();
    }

    pub fn decision(&self, v: Verdict) {
        let i = VERDICTS.iter().position(|x| *x == v).unwrap_or(0);
        self.decisions[i].inc();
    }

    /// Counts a finished request.
    pub fn finished(
        &self,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let m = method_index(method);
        match code_index(status.as_u16()) {
            Some(c) => self.requests[m * CACHED_CODES.len() + c]
                .get_or_init(|| {
                    self.requests_total.with_label_values(&[
                        &self.name,
                        METHODS[m],
                        status.as_str(),
                    ])
                })
                .inc(),
            None => self
                .requests_total
                .with_label_values(&[&self.name, METHODS[m], status.as_str()])
                .inc(),
        }
        self.duration.observe(elapsed.as_secs_f64());
        if bytes_in > 0 {
            self.bytes_in.inc_by(bytes_in);
        }
        if bytes_out > 0 {
            self.bytes_out.inc_by(bytes_out);
        }
    }
}
