//! Each upstream's background tasks: the idle-connection sweep and, with `health_check`, the
//! active health checks that take an endpoint out and bring it back.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::uri::{PathAndQuery, Uri};
use http::{Request, Version};
use tracing::{info, warn};

use crate::config::{RawHealthCheck, UpstreamProtocol};
use crate::upstream::body::UpstreamBody;

use super::Upstream;

/// Starts each upstream's background tasks: the idle-connection sweep and, with
/// `health_check`, the health checks. Each task ends when its upstream is dropped (its snapshot
/// was replaced).
pub fn spawn_background(upstreams: &[Arc<Upstream>]) {
    for u in upstreams {
        u.background.call_once(|| {
            tokio::spawn(sweep_loop(Arc::downgrade(u)));
            if u.health_check.is_some() {
                tokio::spawn(health_check_loop(Arc::downgrade(u)));
            }
        });
    }
}

async fn sweep_loop(upstream: Weak<Upstream>) {
    let every = match upstream.upgrade() {
        Some(u) => (u.connector.idle_timeout / 2)
            .clamp(Duration::from_secs(1), super::pool::SWEEP_AT_MOST_EVERY),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(u) = upstream.upgrade() else { return };
        for e in &u.endpoints {
            e.pool.sweep(u.connector.idle_timeout);
        }
    }
}

async fn health_check_loop(upstream: Weak<Upstream>) {
    loop {
        let Some(u) = upstream.upgrade() else { return };
        let Some(hc) = u.health_check.clone() else {
            return;
        };
        for (i, _) in u.endpoints.iter().enumerate() {
            let passed = u.probe(i, &hc).await;
            u.record_probe(i, passed, &hc);
        }
        drop(u);
        tokio::time::sleep(hc.interval).await;
    }
}

impl Upstream {
    async fn probe(&self, i: usize, hc: &RawHealthCheck) -> bool {
        let e = &self.endpoints[i];
        let Ok(pq) = PathAndQuery::try_from(hc.path.as_str()) else {
            return false;
        };
        let mut req = Request::new(UpstreamBody::Empty);
        if self.protocol == UpstreamProtocol::H2 {
            *req.uri_mut() = self.absolute_uri(e.authority.clone(), pq);
            *req.version_mut() = Version::HTTP_2;
        } else {
            *req.uri_mut() = Uri::from(pq);
        }
        matches!(
            tokio::time::timeout(hc.timeout, e.pool.send(&self.connector, req)).await,
            Ok(Ok(resp)) if resp.status().is_success()
        )
    }

    fn record_probe(&self, i: usize, passed: bool, hc: &RawHealthCheck) {
        let e = &self.endpoints[i];
        let was_healthy = e.healthy.load(Ordering::Relaxed);
        if passed == was_healthy {
            e.hc_streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = e.hc_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if passed {
            hc.healthy_threshold
        } else {
            hc.unhealthy_threshold
        };
        if streak >= threshold.max(1) {
            e.hc_streak.store(0, Ordering::Relaxed);
            e.healthy.store(passed, Ordering::Relaxed);
            if passed {
                // A passing health check also ends a passive ejection.
                e.ejected_until_ms.store(0, Ordering::Relaxed);
                info!(upstream = %self.name, endpoint = %e.authority, "endpoint healthy again");
            } else {
                warn!(upstream = %self.name, endpoint = %e.authority, path = %hc.path, "endpoint failed its health checks");
            }
        }
    }
}
