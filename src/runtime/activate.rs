//! The one way a snapshot goes live, at start and on every reload: apply what the process
//! holds outside the snapshot (log level, inventory bound, metrics gauges), reconcile the live
//! registries, start what new upstreams run in the background, then swap the snapshot in and
//! tell whoever re-checks on a swap (open tunnels).

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::state::{Gateway, ReloadRequest, Snapshot, Trigger};
use crate::util::time::unix_now;

/// Makes `new` the gateway's current snapshot. Never fails: `new` was validated when built.
pub fn activate(gateway: &Gateway, new: Arc<Snapshot>) {
    apply_to_process(gateway, &new);
    report(&new);
    new.publish(&gateway.telemetry.metrics);
    gateway.registries.reconcile(&new);
    crate::upstream::spawn_background(&new.routing.upstreams);
    crate::authn::token::remote::spawn_background(new.remote_jwks());
    crate::authn::revocation::remote::spawn_background(
        new.tls.remote_crls.iter(),
        &reload_on_crl_change(gateway),
    );
    new.mark_revoked_credentials(&gateway.telemetry.inventory, unix_now());
    new.register_credentials(&gateway.telemetry.inventory, unix_now());
    let generation = new.generation;
    gateway.current.store(new);
    gateway.snapshot_swaps.send_replace(generation);
}

/// What the process holds outside the snapshot: the log filter, the inventory's bound.
fn apply_to_process(gateway: &Gateway, new: &Snapshot) {
    if let Err(e) = crate::telemetry::set_log_level(&new.telemetry.log.level) {
        warn!(error = %e, "log.level not applied");
    }
    gateway
        .telemetry
        .inventory
        .set_max_entries(new.telemetry.inventory.max_entries);
}

/// The snapshot's findings, logged as it goes live: warnings, CRL problems, expiry.
fn report(new: &Snapshot) {
    for w in &new.warnings {
        warn!(warning = %w, "config");
    }
    let crls = &new.tls.crl_checks;
    for p in &crls.problems {
        error!(target: "certgate::tls", problem = %p, "crl");
    }
    for p in &crls.unfetched {
        warn!(target: "certgate::tls", problem = %p, "crl");
    }
    for p in &crls.pending {
        info!(target: "certgate::tls", note = %p, "crl");
    }
    for w in new.expiry_warnings(unix_now()) {
        warn!(warning = %w, "expiry");
    }
}

/// What a CRL URL's task calls when it cached a new CRL: a reload, as a changed CRL file gets.
pub(crate) fn reload_on_crl_change(
    gateway: &Gateway,
) -> crate::authn::revocation::remote::OnChange {
    let reloads = gateway.reloads.clone();
    Arc::new(move || {
        let reloads = reloads.clone();
        tokio::spawn(async move {
            let _ = reloads
                .send(ReloadRequest {
                    trigger: Trigger::CrlFetched,
                    reply: None,
                })
                .await;
        });
    })
}
