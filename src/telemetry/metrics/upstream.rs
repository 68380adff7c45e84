//! Per-upstream handles: attempts by outcome, their duration, retries, ejections and
//! connections opened.

use std::time::Duration;

use prometheus::{Histogram, IntCounter};

/// The `outcome` label of `certgate_upstream_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// The upstream answered (any status).
    Response,
    ConnectError,
    Timeout,
    Error,
    /// Every endpoint ejected or unhealthy.
    NoEndpoint,
    /// The client's request body failed (too slow, too large, malformed): not the upstream's
    /// fault, never counted toward ejection.
    ClientError,
}

impl UpstreamOutcome {
    pub(super) const ALL: [UpstreamOutcome; 6] = [
        Self::Response,
        Self::ConnectError,
        Self::Timeout,
        Self::Error,
        Self::NoEndpoint,
        Self::ClientError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::NoEndpoint => "no_healthy_endpoint",
            Self::ClientError => "client_error",
        }
    }
}

/// Per-upstream handles.
pub struct UpstreamMetrics {
    pub(super) outcomes: [IntCounter; 6],
    pub(super) duration: Histogram,
    pub(super) retries: IntCounter,
    pub(super) ejections: IntCounter,
    /// Connections opened to the upstream's endpoints.
    pub connections: IntCounter,
}

impl UpstreamMetrics {
    pub fn record(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        let i = UpstreamOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(3);
        self.outcomes[i].inc();
        if outcome != UpstreamOutcome::NoEndpoint {
            self.duration.observe(elapsed.as_secs_f64());
        }
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    pub fn ejected(&self) {
        self.ejections.inc();
    }
}
