//! The gateway's periodic chores: hourly expiry warnings, inventory saves, the minute's
//! summary of refused handshakes, forgetting rate-limit keys that went idle, and giving freed
//! memory back to the system.

use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{debug, error, info, warn};

use crate::inventory::fleet::FleetSink;

use crate::state::Gateway;
use crate::telemetry::refusals::SUMMARY_EVERY_SECS;
use crate::util::memory::release_free_memory;
use crate::util::time::unix_now;

/// Once a minute, one WARN line for the handshakes refused since the last one (each is also
/// logged at debug and counted in `certgate_tls_handshakes_total`).
pub(super) async fn summarise_refusals(gateway: Arc<Gateway>) {
    let every = std::time::Duration::from_secs(SUMMARY_EVERY_SECS as u64);
    loop {
        tokio::time::sleep(every).await;
        if let Some((total, by_result)) = gateway.telemetry.refusals.take_summary(unix_now()) {
            warn!(
                target: "certgate::tls",
                refused = total,
                by_result = %by_result,
                "tls handshakes refused in the last minute"
            );
        }
    }
}

/// Every 10 s, drops the rate-limit state of keys whose budget is full again, quota counters of
/// windows that are over, and the anomaly state of identities idle for `idle_timeout`: memory
/// follows the identities that are active, not every identity ever seen.
pub(super) async fn sweep_rate_limits(gateway: Arc<Gateway>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        let snapshot = gateway.current.load_full();
        let now_ms = crate::util::time::unix_now_ms();
        gateway
            .telemetry
            .anomalies
            .sweep(snapshot.telemetry.anomaly.as_ref());
        for r in snapshot.routing.routes.routes() {
            if let Some(l) = &r.rate_limit {
                l.sweep();
            }
            if let Some(q) = &r.quota {
                q.sweep(now_ms);
            }
        }
    }
}

/// Every 10 s, gives the memory freed since back to the system ([`release_free_memory`]):
/// after a burst of connections RSS returns to what the gateway holds, instead of staying at
/// the burst's high-water mark.
pub(super) async fn release_free_memory_periodically() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        if release_free_memory() {
            debug!("freed memory given back to the system");
        }
    }
}

/// Repeats the expiry warnings every hour (they are also logged at start and on reload).
pub(super) async fn warn_about_expiry_hourly(gateway: Arc<Gateway>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        for w in gateway.current.load().expiry_warnings(unix_now()) {
            warn!(warning = %w, "expiry");
        }
    }
}

/// Every `flush_interval`, writes what the inventory counted since the last sync to the fleet
/// inventory (`[inventory] postgres`), when one is configured. The first attempt is at start.
pub(super) async fn sync_fleet_inventory(gateway: Arc<Gateway>, sink: Arc<Mutex<FleetSink>>) {
    let mut interval = FlushInterval::new(&gateway);
    loop {
        sync_fleet_once(&gateway, &sink).await;
        interval.tick(&gateway).await;
    }
}

/// `[inventory] flush_interval`, counted from the last flush and read again whenever a
/// snapshot goes live: a reload that shortens it (or adds `path` with its own) applies at once,
/// not after the old interval ran out.
struct FlushInterval {
    swaps: tokio::sync::watch::Receiver<u64>,
    last: tokio::time::Instant,
}

impl FlushInterval {
    fn new(gateway: &Gateway) -> Self {
        Self {
            swaps: gateway.snapshot_swaps.subscribe(),
            last: tokio::time::Instant::now(),
        }
    }

    /// Waits until the interval in force has passed since the last tick.
    async fn tick(&mut self, gateway: &Gateway) {
        loop {
            let every = gateway.current.load().telemetry.inventory.flush_interval;
            tokio::select! {
                () = tokio::time::sleep_until(self.last + every) => break,
                changed = self.swaps.changed() => {
                    if changed.is_err() {
                        // No more swaps: the interval in force stays.
                        tokio::time::sleep_until(self.last + every).await;
                        break;
                    }
                }
            }
        }
        self.last = tokio::time::Instant::now();
    }
}

/// One sync attempt (also the last one at shutdown), logged on every change between working
/// and failing.
pub(super) async fn sync_fleet_once(gateway: &Arc<Gateway>, sink: &Arc<Mutex<FleetSink>>) {
    let snapshot = gateway.current.load_full();
    let Some(url) = &snapshot.telemetry.inventory.postgres else {
        return;
    };
    let telemetry = &gateway.telemetry;
    let mut sink = sink.lock().await;
    let was_failing = sink.failing;
    match sink
        .sync(
            &telemetry.inventory,
            url,
            snapshot.telemetry.inventory.postgres_ca.as_ref(),
        )
        .await
    {
        Ok(done) => {
            telemetry.metrics.inventory_sync_ok.inc();
            sink.failing = false;
            if was_failing {
                info!(target: "certgate::inventory", gateway_id = %sink.gateway_id, synced = ?done, "fleet inventory reachable again");
            } else {
                debug!(target: "certgate::inventory", synced = ?done, "fleet inventory synced");
            }
        }
        Err(e) => {
            telemetry.metrics.inventory_sync_error.inc();
            if !sink.failing {
                error!(target: "certgate::inventory", gateway_id = %sink.gateway_id, error = %e, "fleet inventory unavailable: counts stay pending until it is back");
            } else {
                debug!(target: "certgate::inventory", error = %e, "fleet inventory still unavailable");
            }
            sink.failing = true;
        }
    }
    telemetry
        .metrics
        .inventory_pending_rows
        .set(sink.pending(&telemetry.inventory) as i64);
}

pub(super) async fn flush_inventory_periodically(gateway: Arc<Gateway>) {
    let mut interval = FlushInterval::new(&gateway);
    loop {
        interval.tick(&gateway).await;
        save_inventory(&gateway).await;
    }
}

/// Saves the inventory when `[inventory].path` is set; file I/O runs off the async workers.
pub(super) async fn save_inventory(gateway: &Arc<Gateway>) {
    let snapshot = gateway.current.load();
    let Some(path) = snapshot.telemetry.inventory.path.clone() else {
        return;
    };
    // Pending CRLs come into force after the snapshot went live.
    snapshot.mark_revoked_credentials(&gateway.telemetry.inventory, unix_now());
    let telemetry = gateway.telemetry.clone();
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || telemetry.inventory.save(&path)).await {
        Ok(Ok(n)) => debug!(path = %shown, identities = n, "inventory saved"),
        Ok(Err(e)) => warn!(path = %shown, error = %e, "inventory could not be saved"),
        Err(e) => warn!(path = %shown, error = %e, "inventory save task failed"),
    }
}
