//! The live state of upstreams across reloads. A reload compiles its `[upstreams]` against the
//! registry: an upstream whose definition (its config keys and the content of the files they
//! name) is unchanged is reused whole — pooled connections, health-check results, ejections,
//! in-flight counts — and only a changed or new one is built afresh. When the new snapshot goes
//! live, the registry adopts exactly its upstreams; removed ones are dropped with the old
//! snapshot (their background tasks end when the last handle goes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{ConfigFile, RawUpstream};
use crate::telemetry::metrics::Metrics;

use super::Upstream;

/// What an upstream was compiled from; equal definitions compile to the same upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    raw: RawUpstream,
    /// SHA-256 of each file the definition names (CA, client certificate and key), `None`
    /// when unreadable: a rotated certificate is a changed definition.
    files: Vec<Option<[u8; 32]>>,
}

impl Definition {
    pub fn of(raw: &RawUpstream, file: &ConfigFile) -> Self {
        let files = raw
            .files()
            .map(|p| {
                std::fs::read(file.resolve(p))
                    .ok()
                    .map(|bytes| crate::util::digest::sha256(&bytes))
            })
            .collect();
        Self {
            raw: raw.clone(),
            files,
        }
    }
}

/// Upstreams by name, as the live snapshot has them. Locked only while a snapshot is built or
/// swapped in, never on the request path.
#[derive(Default)]
pub struct UpstreamRegistry {
    live: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl UpstreamRegistry {
    /// The upstream `[upstreams.NAME]` describes: the live one when its definition is
    /// unchanged, else a newly compiled one (registered only once its snapshot goes live).
    /// Errors are `(key, problem)`.
    pub fn resolve(
        &self,
        name: &str,
        raw: &RawUpstream,
        file: &ConfigFile,
        metrics: &Metrics,
    ) -> Result<Arc<Upstream>, (&'static str, String)> {
        let definition = Definition::of(raw, file);
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(up) = live.get(name)
            && up.definition == definition
        {
            return Ok(up.clone());
        }
        drop(live);
        Upstream::compile(name, raw, definition, file, metrics).map(Arc::new)
    }

    /// Makes `upstreams` (those of the snapshot going live) the registered set.
    pub fn adopt(&self, upstreams: &[Arc<Upstream>]) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(upstreams.iter().map(|u| (u.name.clone(), u.clone())));
    }
}
