//! The mTLS listener: the accept loop with its connection limit, shutdown grace and drain;
//! each accepted connection is handed to [`connection`] (TLS handshake in [`handshake`], then
//! HTTP/1.1 or HTTP/2 by ALPN).

mod connection;
mod h2flood;
mod handshake;
mod head_timer;
mod io;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::state::Gateway;
use crate::telemetry::metrics::Limit;

/// Accepts connections until `shutdown` completes and the grace period has passed, then stops
/// accepting and lets in-flight requests finish for up to `listener.drain_timeout`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut max_connections = gateway.current.load().listener.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    // Set once SIGTERM arrives: keep accepting (not ready) until then.
    let mut stop_accepting_at: Option<tokio::time::Instant> = None;
    loop {
        resize(
            &slots,
            &mut max_connections,
            gateway.current.load().listener.max_connections,
        );
        // At max_connections, stop accepting until a connection ends: new clients wait in
        // the kernel's accept queue instead of being refused.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                gateway.telemetry.metrics.limit_hit(Limit::Connections);
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown, if stop_accepting_at.is_none() => {
                        stop_accepting_at = Some(begin_shutdown(&gateway));
                        continue;
                    }
                    () = sleep_until(stop_accepting_at), if stop_accepting_at.is_some() => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // One address may not hold every slot either (checked before any TLS work).
                    let limit = gateway.current.load().listener.max_connections_per_source_ip;
                    let Some(ip_slot) = gateway.conn_caps.admit_ip(peer.ip(), limit) else {
                        gateway.telemetry.metrics.limit_hit(Limit::ConnectionsPerSourceIp);
                        tracing::debug!(client = %peer, limit, "connection closed: max_connections_per_source_ip reached");
                        continue;
                    };
                    connections.spawn(connection::serve(gateway.clone(), tcp, peer, stop.clone(), (permit, ip_slot)));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown, if stop_accepting_at.is_none() => {
                stop_accepting_at = Some(begin_shutdown(&gateway));
            }
            () = sleep_until(stop_accepting_at), if stop_accepting_at.is_some() => break,
        }
    }
    gateway.ready.store(false, Ordering::SeqCst);
    drop(listener);
    let drain = gateway.current.load().listener.drain_timeout;
    info!(
        connections = connections.len(),
        ?drain,
        "shutting down: draining in-flight requests"
    );
    stop.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => info!("drained; exiting"),
        () = tokio::time::sleep(drain) => warn!(remaining = connections.len(), "drain timeout reached; closing remaining connections"),
    }
}

/// SIGTERM: readiness off at once; the listener stays open for `shutdown_grace` so load
/// balancers stop sending traffic before connections are refused.
fn begin_shutdown(gateway: &Gateway) -> tokio::time::Instant {
    gateway.ready.store(false, Ordering::SeqCst);
    let grace = gateway.current.load().listener.shutdown_grace;
    info!(
        ?grace,
        "shutdown requested: not ready; still accepting during the grace period"
    );
    tokio::time::Instant::now() + grace
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a reloaded `max_connections` to the accept semaphore.
fn resize(slots: &Semaphore, current: &mut usize, wanted: usize) {
    if wanted > *current {
        slots.add_permits(wanted - *current);
        *current = wanted;
    } else if wanted < *current {
        // Permits held by open connections are taken back as those connections end.
        let forgotten = slots.forget_permits(*current - wanted);
        *current -= forgotten;
    }
}
