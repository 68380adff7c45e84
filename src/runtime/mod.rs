//! Starting, reloading and stopping the gateway: bind the sockets, make the first snapshot
//! live (the same [`activate`] path every reload takes), run the admin listener, the reload
//! triggers and the periodic tasks beside the mTLS [`crate::listener`], and stop on a signal.

pub mod activate;
pub mod admin;
pub mod reload;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::authn::identity::IdentityCache;
use crate::inventory::LoadOutcome;
use crate::inventory::fleet::FleetSink;
use crate::runtime::activate::activate;
use crate::state::{Gateway, Registries, ReloadRequest, Snapshot};
use crate::telemetry::Telemetry;

/// How long the start waits for the first fetch of each JWKS URL.
/// How long the first fetch of a JWKS or CRL URL may hold up serving (at start and when a
/// reload brings a new URL).
pub(crate) const FIRST_JWKS_FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping gateway gives its last fleet-inventory sync.
const FINAL_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a starting gateway waits for its Redis rate-limit backend before serving anyway
/// (under `on_backend_error`).
const FIRST_BACKEND_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A gateway whose sockets are bound but which is not serving yet.
pub struct Bound {
    gateway: Arc<Gateway>,
    reload_requests: tokio::sync::mpsc::Receiver<ReloadRequest>,
    listener: TcpListener,
    admin: TcpListener,
}

impl Bound {
    /// Binds the mTLS and admin listeners named in the snapshot. `telemetry` must be the one
    /// the snapshot was built with.
    /// `registries` are those the snapshot was built against; the gateway keeps them.
    pub async fn bind(
        snapshot: Snapshot,
        telemetry: Arc<Telemetry>,
        registries: Registries,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(snapshot.listener.bind)
            .await
            .map_err(|e| {
                anyhow::anyhow!("listener.bind: cannot bind {}: {e}", snapshot.listener.bind)
            })?;
        let admin = TcpListener::bind(snapshot.admin.bind)
            .await
            .map_err(|e| anyhow::anyhow!("admin.bind: cannot bind {}: {e}", snapshot.admin.bind))?;
        telemetry
            .inventory
            .set_max_entries(snapshot.telemetry.inventory.max_entries);
        if let Some(path) = &snapshot.telemetry.inventory.path {
            match telemetry.inventory.load(path) {
                LoadOutcome::NoFile => {
                    info!(path = %path.display(), "inventory: no saved file yet")
                }
                LoadOutcome::Loaded(n) => {
                    info!(path = %path.display(), identities = n, "inventory loaded")
                }
                LoadOutcome::SetAside(aside, why) => warn!(
                    path = %path.display(),
                    set_aside = %aside.display(),
                    error = %why,
                    "inventory file unreadable; set aside, starting empty"
                ),
            }
        }
        let (reloads, reload_requests) = reload::channel();
        let (snapshot_swaps, _) = tokio::sync::watch::channel(snapshot.generation);
        Ok(Self {
            gateway: Arc::new(Gateway {
                current: ArcSwap::from_pointee(snapshot),
                telemetry,
                ready: AtomicBool::new(false),
                identities: IdentityCache::default(),
                conn_caps: Default::default(),
                reloads,
                registries,
                snapshot_swaps,
            }),
            reload_requests,
            listener,
            admin,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and drains in-flight requests for
    /// up to the configured `drain_timeout`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Bound {
            gateway,
            reload_requests,
            listener,
            admin,
        } = self;
        let snap = gateway.current.load_full();
        activate(&gateway, snap.clone());
        let reload_task = tokio::spawn(reload::run(gateway.clone(), reload_requests));
        // Keys from JWKS URLs are fetched before the first request is served (or given up on
        // after a while: their tokens are refused until a fetch succeeds).
        for r in snap.remote_jwks() {
            r.first_fetch(FIRST_JWKS_FETCH_WAIT).await;
        }
        // CRLs from URLs likewise: a fetched CRL goes to the cache and a reload brings it in.
        let mut fetched = false;
        for r in &snap.tls.remote_crls {
            fetched |= r.first_fetch(FIRST_JWKS_FETCH_WAIT).await;
        }
        if fetched {
            let mut swaps = gateway.snapshot_swaps.subscribe();
            let first = snap.generation;
            let _ =
                tokio::time::timeout(FIRST_JWKS_FETCH_WAIT, swaps.wait_for(|g| *g != first)).await;
        }
        for p in &gateway.current.load().tls.crl_checks.unfetched {
            error!(target: "certgate::tls", problem = %p, "crl");
        }
        // Likewise the fleet's rate-limit counters, so the first requests are counted there.
        if let Some(b) = &snap.limits.backend {
            b.wait_up(FIRST_BACKEND_WAIT).await;
        }
        info!(
            listen = %listener.local_addr()?,
            admin = %admin.local_addr()?,
            routes = snap.routing.routes.routes().len(),
            upstreams = snap.routing.upstreams.len(),
            client_auth = snap.tls.client_auth_mode.as_str(),
            config = %snap.config_path.display(),
            "certgate serving"
        );
        let admin_task = tokio::spawn(admin::serve(admin, gateway.clone()));
        let flush_task = tokio::spawn(tasks::flush_inventory_periodically(gateway.clone()));
        let gateway_id = snap
            .telemetry
            .inventory
            .gateway_id
            .clone()
            .unwrap_or_else(crate::inventory::fleet::default_gateway_id);
        let fleet = Arc::new(tokio::sync::Mutex::new(FleetSink::new(gateway_id)));
        let fleet_task = tokio::spawn(tasks::sync_fleet_inventory(gateway.clone(), fleet.clone()));
        reload::spawn_sighup(gateway.reloads.clone());
        if snap.reload.watch {
            reload::spawn_watcher(gateway.clone(), gateway.reloads.clone());
        }
        let expiry_task = tokio::spawn(tasks::warn_about_expiry_hourly(gateway.clone()));
        let refusals_task = tokio::spawn(tasks::summarise_refusals(gateway.clone()));
        let limits_task = tokio::spawn(tasks::sweep_rate_limits(gateway.clone()));
        let memory_task = tokio::spawn(tasks::release_free_memory_periodically());
        drop(snap);
        gateway.ready.store(true, Ordering::SeqCst);
        crate::listener::serve(gateway.clone(), listener, shutdown).await;
        admin_task.abort();
        flush_task.abort();
        fleet_task.abort();
        reload_task.abort();
        expiry_task.abort();
        refusals_task.abort();
        limits_task.abort();
        memory_task.abort();
        tasks::save_inventory(&gateway).await;
        // What was counted since the last sync goes to the fleet inventory too, if it answers.
        let _ =
            tokio::time::timeout(FINAL_SYNC_WAIT, tasks::sync_fleet_once(&gateway, &fleet)).await;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
