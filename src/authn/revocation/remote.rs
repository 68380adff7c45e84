//! CRLs fetched from URLs (`client_auth.crl_urls`): live state that outlives snapshots. Each URL
//! has one [`RemoteCrl`] whose background task fetches it at start and every `crl_refresh`
//! (conditional GET), checks a new document exactly as a CRL file is checked, and only then
//! writes it atomically to `crl_cache_dir` and asks for a reload — so a new CRL applies to new
//! handshakes, open connections and resumed sessions as a changed CRL file does. Snapshots read
//! a URL's CRL from its cache file, which is also what a restart with the URL down starts from.
//! A failed fetch, or a document that is not a usable CRL, keeps the last good copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use tracing::{info, warn};

use super::crl;
use crate::authn::fetch::{FetchCounters, FetchError, Fetcher, Validators};
use crate::util::digest::sha256;

/// One fetch may take this long (a large CRL over a slow link).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// After a failed fetch, try again this soon (capped by `crl_refresh`).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What a CRL URL is fetched with; an unchanged definition keeps its [`RemoteCrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub url: String,
    pub refresh: Duration,
    pub cache: PathBuf,
    /// `client_auth.crl_max_bytes`: a larger document is refused while it streams.
    pub max_bytes: usize,
}

/// Called when a fetch brought a new usable CRL (and it is in the cache): ask for a reload.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// One CRL URL: its cache file, its fetcher, and the CAs a fetched CRL must come from.
pub struct RemoteCrl {
    pub definition: Definition,
    /// The URL as logs and metrics show it (no userinfo).
    pub source: String,
    fetcher: Fetcher,
    /// Trust anchors and intermediates of the snapshot in force.
    cas: ArcSwap<Vec<CertificateDer<'static>>>,
    /// SHA-256 of the cached document, to tell a new one from the same one sent again.
    cached: Mutex<Option<[u8; 32]>>,
    first_done: tokio::sync::watch::Sender<bool>,
    /// The last fetch changed the cache (read by the start-up path).
    changed: AtomicBool,
    background: Once,
    metrics: FetchCounters,
}

impl RemoteCrl {
    /// Waits until the first fetch was attempted, at most `timeout`; true if it brought a new
    /// CRL into the cache.
    pub async fn first_fetch(&self, timeout: Duration) -> bool {
        let mut rx = self.first_done.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|done| *done)).await;
        self.changed.load(Ordering::Relaxed)
    }

    /// The CAs a fetched CRL must be issued by (those of the snapshot going live).
    pub fn set_cas(&self, cas: Arc<Vec<CertificateDer<'static>>>) {
        self.cas.store(cas);
    }

    /// One fetch; the cache is replaced only by a usable CRL that differs from it. The
    /// document streams into a file beside the cache (bounded by `max_bytes`, never held whole
    /// while it downloads), is checked from there, and replaces the cache by a rename.
    async fn fetch_once(&self, validators: &mut Validators, on_change: &OnChange) -> bool {
        let source = &self.source;
        let part = self.definition.cache.with_extension("crl.part");
        let d = &self.definition;
        let got = match self
            .fetcher
            .download(validators, d.max_bytes, FETCH_TIMEOUT, &part)
            .await
        {
            Ok(None) => {
                self.metrics.not_modified.inc();
                return true;
            }
            Ok(Some(got)) => got,
            Err(e) => {
                match e {
                    FetchError::TooLarge(_) => self.metrics.too_large.inc(),
                    _ => self.metrics.error.inc(),
                }
                warn!(target: "certgate::tls", source = %source, error = %e, "CRL fetch failed; keeping the last good CRL");
                return false;
            }
        };
        *validators = got.validators;
        if *self.cached.lock().unwrap_or_else(|e| e.into_inner()) == Some(got.digest) {
            let _ = tokio::fs::remove_file(&part).await;
            self.metrics.not_modified.inc();
            return true;
        }
        let cas = self.cas.load_full();
        let cache = d.cache.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let checked = std::fs::read(&part)
                .map_err(|e| format!("cache: {e}"))
                .and_then(|body| crl::parse_crls(&body, &cas).map_err(|u| u.why))
                .and_then(|crls| {
                    replace_atomically(&part, &cache).map_err(|e| format!("cache: {e}"))?;
                    Ok(crls.iter().map(|c| c.revoked_count).sum::<usize>())
                });
            if checked.is_err() {
                let _ = std::fs::remove_file(&part);
            }
            checked
        })
        .await
        .unwrap_or_else(|e| Err(format!("check task failed: {e}")));
        match checked {
            Ok(revoked) => {
                self.metrics.ok.inc();
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(got.digest);
                self.changed.store(true, Ordering::Relaxed);
                info!(target: "certgate::tls", source = %source, revoked, cache = %d.cache.display(), "CRL fetched");
                on_change();
                true
            }
            Err(e) if e.starts_with("cache: ") => {
                self.metrics.error.inc();
                warn!(target: "certgate::tls", source = %source, error = %e, "CRL fetched but not cached; keeping the last good CRL");
                false
            }
            Err(e) => {
                self.metrics.invalid.inc();
                warn!(target: "certgate::tls", source = %source, error = %e, "CRL fetched but unusable; keeping the last good CRL");
                false
            }
        }
    }
}

/// Moves the downloaded `part` over `path` so that a reader sees the old file or the new one,
/// never a part: both in the same directory, `part` already synced; the directory synced after.
fn replace_atomically(part: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(part, path)?;
    if let Ok(d) = std::fs::File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Starts the fetch task of each CRL URL that has none yet. A task ends when its URL is no
/// longer used by any snapshot.
pub fn spawn_background<'a>(
    remotes: impl Iterator<Item = &'a Arc<RemoteCrl>>,
    on_change: &OnChange,
) {
    for r in remotes {
        r.background.call_once(|| {
            drop(tokio::spawn(fetch_loop(
                Arc::downgrade(r),
                on_change.clone(),
            )));
        });
    }
}

async fn fetch_loop(remote: Weak<RemoteCrl>, on_change: OnChange) {
    let mut validators = Validators::default();
    loop {
        let wait = {
            let Some(r) = remote.upgrade() else { return };
            r.changed.store(false, Ordering::Relaxed);
            let ok = r.fetch_once(&mut validators, &on_change).await;
            r.first_done.send_replace(true);
            if ok {
                r.definition.refresh
            } else {
                r.definition.refresh.min(RETRY_AFTER_FAILURE)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// CRL URLs as the live snapshot has them. Locked only while a snapshot is built or swapped in.
#[derive(Default)]
pub struct CrlUrlRegistry {
    live: Mutex<HashMap<String, Arc<RemoteCrl>>>,
}

impl CrlUrlRegistry {
    /// The [`RemoteCrl`] of a URL: the live one when its definition is unchanged, else a new
    /// one. `counter` gives the `certgate_crl_fetches_total` counter of this source for a
    /// result label.
    pub fn resolve(
        &self,
        definition: Definition,
        counter: &dyn Fn(&str, &str) -> prometheus::IntCounter,
    ) -> Result<Arc<RemoteCrl>, FetchError> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = live.get(&definition.url)
            && r.definition == definition
        {
            return Ok(r.clone());
        }
        drop(live);
        let fetcher = Fetcher::new(&definition.url, None)?;
        let source = display_url(&definition.url);
        let cached = std::fs::read(&definition.cache).ok().map(|b| sha256(&b));
        Ok(Arc::new(RemoteCrl {
            metrics: FetchCounters::new(&|result| counter(&source, result)),
            source,
            definition,
            fetcher,
            cas: ArcSwap::from_pointee(Vec::new()),
            cached: Mutex::new(cached),
            first_done: tokio::sync::watch::channel(false).0,
            changed: AtomicBool::new(false),
            background: Once::new(),
        }))
    }

    /// Makes `remotes` (those of the snapshot going live) the registered set, with the CAs
    /// their CRLs must come from.
    pub fn adopt<'a>(
        &self,
        remotes: impl Iterator<Item = &'a Arc<RemoteCrl>>,
        cas: &Arc<Vec<CertificateDer<'static>>>,
    ) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        for r in remotes {
            r.set_cas(cas.clone());
            live.insert(r.definition.url.clone(), r.clone());
        }
    }
}

/// A URL without its userinfo, for logs and metric labels.
pub fn display_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The cache file of a URL in `dir`: readable (host and path, sanitised) and unique (a digest
/// of the whole URL).
pub fn cache_path(dir: &Path, url: &str) -> PathBuf {
    let shown = display_url(url);
    let readable: String = shown
        .split_once("://")
        .map_or(shown.as_str(), |(_, r)| r)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let digest = sha256(url.as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{readable}-{tag}.crl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_userinfo_and_cached_under_distinct_names() {
        assert_eq!(
            display_url("https://user:pw@crl.example.com:8443/a/b.crl"),
            "https://crl.example.com:8443/a/b.crl"
        );
        assert_eq!(display_url("http://h/x"), "http://h/x");
        let dir = Path::new("/c");
        let a = cache_path(dir, "http://h/x.crl");
        let b = cache_path(dir, "http://h/x.crl?v=2");
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().starts_with("/c/h_x.crl-"), "{a:?}");
        assert!(
            !cache_path(dir, "http://u:secret@h/x")
                .to_str()
                .unwrap()
                .contains("secret")
        );
    }
}
