//! JWKS fetched from a URL: live state that outlives snapshots. Each URL issuer has one
//! [`RemoteJwks`] whose background task fetches the keys at start, every `jwks_refresh`, and
//! early (at most once per [`REFETCH_MIN_INTERVAL`]) when a token names a key it does not have.
//! A fetch that fails or brings junk keeps the last good keys. A reload that leaves an issuer's
//! fetching unchanged keeps its keys and its task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use tracing::{info, warn};

use super::jwks::{JwksError, KeySet, MAX_JWKS_BYTES};
use crate::authn::fetch::{FetchCounters, FetchError, Fetched, Fetcher, Validators};

/// Unknown-`kid` refetches are at most this frequent.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// One fetch may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Until the first good fetch, retry this often (capped by `jwks_refresh`).
const RETRY_BEFORE_FIRST: Duration = Duration::from_secs(5);

/// What a remote key set is fetched with; equal definitions share one [`RemoteJwks`].
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub url: String,
    pub refresh: Duration,
    pub algorithms: Vec<Algorithm>,
    /// SHA-256 of the `jwks_ca` bundle, when there is one.
    pub ca_digest: Option<[u8; 32]>,
}

/// The keys of one URL issuer and what fetches them.
pub struct RemoteJwks {
    pub issuer: String,
    pub definition: Definition,
    pub keys: Arc<ArcSwap<KeySet>>,
    fetcher: Fetcher,
    refetch: Arc<tokio::sync::Notify>,
    /// Milliseconds since `epoch` of the last early refetch asked for (0 = never).
    last_early: AtomicU64,
    epoch: Instant,
    /// The first fetch was attempted (whatever its result).
    first_done: tokio::sync::watch::Sender<bool>,
    fetched_ok: AtomicBool,
    background: Once,
    metrics: FetchCounters,
}

impl RemoteJwks {
    fn new(
        issuer: &str,
        definition: Definition,
        fetcher: Fetcher,
        counter: &dyn Fn(&str) -> prometheus::IntCounter,
    ) -> Self {
        Self {
            issuer: issuer.to_string(),
            definition,
            keys: Arc::new(ArcSwap::from_pointee(KeySet::empty())),
            fetcher,
            refetch: Arc::new(tokio::sync::Notify::new()),
            last_early: AtomicU64::new(0),
            epoch: Instant::now(),
            first_done: tokio::sync::watch::channel(false).0,
            fetched_ok: AtomicBool::new(false),
            background: Once::new(),
            metrics: FetchCounters::new(counter),
        }
    }

    /// A token named a key this set lacks: fetch again now, unless that was asked for less
    /// than [`REFETCH_MIN_INTERVAL`] ago. Never waits.
    pub fn refetch_soon(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_early.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < REFETCH_MIN_INTERVAL.as_millis() as u64 {
            return;
        }
        if self
            .last_early
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.refetch.notify_one();
        }
    }

    /// Waits until the first fetch was attempted, at most `timeout`.
    pub async fn first_fetch(&self, timeout: Duration) {
        let mut rx = self.first_done.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|done| *done)).await;
    }

    /// Fetches and parses the document once, without touching the live keys (`explain`).
    pub async fn fetch_now(&self) -> Result<KeySet, JwksError> {
        match self
            .fetcher
            .get(&Validators::default(), MAX_JWKS_BYTES, FETCH_TIMEOUT)
            .await?
        {
            Fetched::Document { body, .. } => KeySet::parse(&body, &self.definition.algorithms),
            Fetched::NotModified => Err(JwksError::Invalid("304 to an unconditional GET".into())),
        }
    }

    /// One fetch; the keys are replaced only by a good document.
    async fn fetch_once(&self, validators: &mut Validators) {
        let url = &self.definition.url;
        match self
            .fetcher
            .get(validators, MAX_JWKS_BYTES, FETCH_TIMEOUT)
            .await
        {
            Ok(Fetched::NotModified) => self.metrics.not_modified.inc(),
            Ok(Fetched::Document {
                body,
                validators: v,
            }) => match KeySet::parse(&body, &self.definition.algorithms) {
                Ok(set) => {
                    self.metrics.ok.inc();
                    for s in &set.skipped {
                        warn!(issuer = %self.issuer, url = %url, key = %s, "JWKS key skipped");
                    }
                    info!(issuer = %self.issuer, url = %url, keys = set.keys.len(), "JWKS fetched");
                    self.keys.store(Arc::new(set));
                    self.fetched_ok.store(true, Ordering::Relaxed);
                    *validators = v;
                }
                Err(e) => {
                    self.metrics.invalid.inc();
                    warn!(issuer = %self.issuer, url = %url, error = %e, "JWKS fetched but unusable; keeping the last good keys");
                }
            },
            Err(e) => {
                self.metrics.error.inc();
                warn!(issuer = %self.issuer, url = %url, error = %e, "JWKS fetch failed; keeping the last good keys");
            }
        }
        self.first_done.send_replace(true);
    }
}

/// Starts the fetch task of each remote key set that has none yet. A task ends when its key
/// set is no longer used by any snapshot.
pub fn spawn_background<'a>(remotes: impl Iterator<Item = &'a Arc<RemoteJwks>>) {
    for r in remotes {
        r.background
            .call_once(|| drop(tokio::spawn(fetch_loop(Arc::downgrade(r)))));
    }
}

async fn fetch_loop(remote: Weak<RemoteJwks>) {
    let mut validators = Validators::default();
    loop {
        let (wait, refetch) = {
            let Some(r) = remote.upgrade() else { return };
            r.fetch_once(&mut validators).await;
            let wait = if r.fetched_ok.load(Ordering::Relaxed) {
                r.definition.refresh
            } else {
                r.definition.refresh.min(RETRY_BEFORE_FIRST)
            };
            (wait, r.refetch.clone())
        };
        // Only the wake-up handle is held while waiting: a dropped key set ends the task at
        // its next turn.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = refetch.notified() => {}
        }
    }
}

/// Remote key sets by issuer name, as the live snapshot has them. Locked only while a
/// snapshot is built or swapped in.
#[derive(Default)]
pub struct JwksRegistry {
    live: Mutex<HashMap<String, Arc<RemoteJwks>>>,
}

impl JwksRegistry {
    /// The remote key set of `issuer`: the live one when its definition is unchanged, else a
    /// new one (empty until its first fetch). `counter` gives the
    /// `certgate_jwks_fetches_total` counter of this issuer for a result label.
    pub fn resolve(
        &self,
        issuer: &str,
        definition: Definition,
        ca: Option<&std::path::Path>,
        counter: &dyn Fn(&str) -> prometheus::IntCounter,
    ) -> Result<Arc<RemoteJwks>, FetchError> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = live.get(issuer)
            && r.definition == definition
        {
            return Ok(r.clone());
        }
        drop(live);
        let fetcher = Fetcher::new(&definition.url, ca)?;
        Ok(Arc::new(RemoteJwks::new(
            issuer, definition, fetcher, counter,
        )))
    }

    /// Makes `remotes` (those of the snapshot going live) the registered set.
    pub fn adopt<'a>(&self, remotes: impl Iterator<Item = &'a Arc<RemoteJwks>>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(remotes.map(|r| (r.issuer.clone(), r.clone())));
    }
}
