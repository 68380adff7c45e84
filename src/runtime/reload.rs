//! Hot reload: SIGHUP, `POST /reload`, and changes to the config or any file it references
//! (watched with notify, plus a polling fallback). A reload builds and validates a complete new
//! [`Snapshot`] and swaps it in atomically; a broken one is refused and the old one keeps
//! serving. Reloads run one at a time, in one task.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::runtime::activate::activate;
use crate::state::snapshot::Snapshot;
use crate::state::{Gateway, ReloadError, ReloadRequest, Trigger};

pub fn channel() -> (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>) {
    mpsc::channel(16)
}

/// Builds a snapshot from the config file off the async threads.
async fn build(gateway: &Arc<Gateway>) -> Result<Snapshot, ReloadError> {
    let path = gateway.current.load().config_path.clone();
    let building = gateway.clone();
    let built = tokio::task::spawn_blocking(move || {
        Snapshot::load(&path, &building.telemetry, &building.registries)
    })
    .await?;
    Ok(built?)
}

/// A CRL URL new in this config (nothing cached yet) is fetched before the config goes live,
/// so its CA's clients are not refused as revocation-unknown in the meantime: when the first
/// fetch brings a CRL, the snapshot is built again with it.
async fn fetch_new_crl_urls(gateway: &Arc<Gateway>, new: Snapshot) -> Snapshot {
    if new.tls.crl_checks.unfetched.is_empty() {
        return new;
    }
    for r in &new.tls.remote_crls {
        r.set_cas(new.tls.client_cas.clone());
    }
    crate::authn::revocation::remote::spawn_background(
        new.tls.remote_crls.iter(),
        &crate::runtime::activate::reload_on_crl_change(gateway),
    );
    let mut fetched = false;
    for r in &new.tls.remote_crls {
        fetched |= r.first_fetch(crate::runtime::FIRST_JWKS_FETCH_WAIT).await;
    }
    if !fetched {
        return new;
    }
    build(gateway).await.unwrap_or(new)
}

/// Serves reload requests until the gateway goes away. File-change requests only reload when
/// the content of an input actually changed.
pub async fn run(gateway: Arc<Gateway>, mut requests: mpsc::Receiver<ReloadRequest>) {
    let mut last = fingerprint(gateway.current.load().inputs.clone()).await;
    while let Some(req) = requests.recv().await {
        if req.trigger == Trigger::FileChange {
            debug!("checking the config's inputs for changes");
            let now = fingerprint(gateway.current.load().inputs.clone()).await;
            if now == last {
                continue;
            }
            // Remembered even if the reload fails: a broken file is reported once, not on
            // every poll, and retried when it changes again.
            last = now;
        }
        let result = reload(&gateway, req.trigger).await;
        if result.is_ok() {
            last = fingerprint(gateway.current.load().inputs.clone()).await;
        }
        if let Some(reply) = req.reply {
            let _ = reply.send(result);
        }
    }
}

async fn reload(gateway: &Arc<Gateway>, trigger: Trigger) -> Result<u64, ReloadError> {
    let metrics = &gateway.telemetry.metrics;
    let new = build(gateway).await.inspect_err(|e| {
        metrics.config_reloads_error.inc();
        error!(trigger = trigger.label(), error = %e, "config reload refused; the running config stays in force");
    })?;
    let old = gateway.current.load_full();
    if new.listener.bind != old.listener.bind {
        warn!(running = %old.listener.bind, configured = %new.listener.bind, "listener.bind changed: restart certgate to move the listener; everything else is applied");
    }
    if new.admin.bind != old.admin.bind {
        warn!(running = %old.admin.bind, configured = %new.admin.bind, "admin.bind changed: restart certgate to move the admin listener");
    }
    // Keys of a JWKS URL that is new in this config are fetched before it goes live, so its
    // routes do not refuse valid tokens in the meantime.
    crate::authn::token::remote::spawn_background(new.remote_jwks());
    for r in new.remote_jwks() {
        r.first_fetch(crate::runtime::FIRST_JWKS_FETCH_WAIT).await;
    }
    let new = fetch_new_crl_urls(gateway, new).await;
    let generation = new.generation;
    activate(gateway, Arc::new(new));
    metrics.config_reloads_ok.inc();
    info!(trigger = trigger.label(), generation, "config reloaded");
    Ok(generation)
}

/// Whether a file event may have changed an input: not a read (our own fingerprinting reads
/// every input, and must not wake us up again), and about a file named like an input or a
/// Kubernetes atomic-writer entry (`..data`, `..2024_…`), whose swap changes every input
/// behind it. Other files in the same directories (logs, editor swap files) are ignored.
fn concerns_inputs(event: &notify::Event, inputs: &[PathBuf]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        let Some(name) = p.file_name() else {
            return false;
        };
        name.as_encoded_bytes().starts_with(b"..")
            || inputs.iter().any(|i| i.file_name() == Some(name))
    })
}

/// SHA-256 over every input's path and content (following symlinks, as Kubernetes mounts use).
async fn fingerprint(inputs: Vec<PathBuf>) -> [u8; 32] {
    tokio::task::spawn_blocking(move || {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for p in &inputs {
            ctx.update(p.as_os_str().as_encoded_bytes());
            match std::fs::read(p) {
                Ok(bytes) => {
                    ctx.update(&(bytes.len() as u64).to_le_bytes());
                    ctx.update(&bytes);
                }
                Err(_) => ctx.update(b"\0missing"),
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    })
    .await
    .unwrap_or([0; 32])
}

/// Turns SIGHUP into reload requests.
pub fn spawn_sighup(requests: mpsc::Sender<ReloadRequest>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; use POST /reload");
            return;
        };
        while hup.recv().await.is_some() {
            let req = ReloadRequest {
                trigger: Trigger::Signal,
                reply: None,
            };
            if requests.send(req).await.is_err() {
                return;
            }
        }
    });
}

/// Watches the directories of every input (a Kubernetes Secret/ConfigMap update swaps a
/// `..data` symlink there; editors write a temporary file and rename it) and also polls every
/// `[reload].poll_interval`. Either way the reload task compares content before reloading.
pub fn spawn_watcher(gateway: Arc<Gateway>, requests: mpsc::Sender<ReloadRequest>) {
    tokio::spawn(async move {
        let (events_tx, mut events) = mpsc::channel::<()>(64);
        let seen_by = gateway.clone();
        let mut watcher =
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res
                    && concerns_inputs(&event, &seen_by.current.load().inputs)
                {
                    let _ = events_tx.try_send(());
                }
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(error = %e, "file change notifications unavailable; polling only");
                    None
                }
            };
        let mut watched: HashSet<PathBuf> = HashSet::new();
        loop {
            let (dirs, poll) = {
                let snap = gateway.current.load();
                let dirs: Vec<PathBuf> = snap
                    .inputs
                    .iter()
                    .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
                    .collect();
                (dirs, snap.reload.poll_interval)
            };
            if let Some(w) = watcher.as_mut() {
                use notify::Watcher as _;
                for dir in dirs {
                    let dir = if dir.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        dir
                    };
                    if watched.insert(dir.clone())
                        && let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive)
                    {
                        warn!(dir = %dir.display(), error = %e, "cannot watch directory; polling covers it");
                    }
                }
            }
            tokio::select! {
                Some(()) = events.recv() => {
                    // Let a burst of events (a symlink swap, a rename) settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while events.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(poll) => {}
            }
            let req = ReloadRequest {
                trigger: Trigger::FileChange,
                reply: None,
            };
            if requests.send(req).await.is_err() {
                return;
            }
        }
    });
}
