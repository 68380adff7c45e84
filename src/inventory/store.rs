//! The inventory on disk: saved atomically as JSON, loaded at start; an unreadable file is set
//! aside, never fatal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::util::time::unix_now;

use super::{Entry, Inventory, InventoryError, Kind, Record};

#[derive(Serialize, Deserialize)]
struct InventoryFile {
    version: u32,
    identities: Vec<Record>,
}

/// What loading a saved inventory found.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    NoFile,
    Loaded(usize),
    /// The file could not be read as an inventory; it was renamed to the given path.
    SetAside(PathBuf, String),
}

/// The records of an inventory file, read only (`certgate inventory`); `None` when there is no
/// file.
pub fn read_file(path: &Path) -> Result<Option<Vec<Record>>, InventoryError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file: InventoryFile = serde_json::from_slice(&bytes)?;
    if file.version != 1 {
        return Err(InventoryError::Version(file.version));
    }
    Ok(Some(file.identities))
}

impl Inventory {
    /// Writes the inventory to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<usize> {
        let records = self.records();
        let n = records.len();
        let file = InventoryFile {
            version: 1,
            identities: records,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &json)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(n)
    }

    /// Loads a saved inventory. A missing file is fine; an unreadable one is renamed aside and
    /// reported, never fatal.
    pub fn load(&self, path: &Path) -> LoadOutcome {
        let identities = match read_file(path) {
            Ok(Some(ids)) => ids,
            Ok(None) => return LoadOutcome::NoFile,
            Err(e) => return self.set_aside(path, e.to_string()),
        };
        let n = identities.len();
        for r in identities {
            let Some(key) = hex::decode(&r.identity.sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            let kind = r.identity.kind;
            let entry = Entry::new(r.identity, r.first_seen, r.last_seen);
            let owner: Option<Arc<str>> = r.owner.as_deref().map(Arc::from);
            if let Some(o) = &owner
                && kind == Kind::Certificate
            {
                self.note_certificate_owner(o);
            }
            if let Some(days) = &entry.days {
                days.restore(&r.uses_by_day);
            }
            entry.set_owner(owner);
            if let Some(t) = r.revoked_at {
                entry.mark_revoked(t);
            }
            entry.allowed.store(r.requests_allowed, Ordering::Relaxed);
            entry.denied.store(r.requests_denied, Ordering::Relaxed);
            for name in &r.routes_allowed {
                entry.routes_allowed.insert(self.route_id(name));
            }
            entry.principals.restore(
                &r.token_subjects,
                &r.token_client_ids,
                r.token_principals_overflow,
            );
            for name in &r.routes_refused {
                entry.routes_refused.insert(self.route_id(name));
            }
            for u in &r.route_counts {
                let id = self.route_id(&u.route);
                entry
                    .route_counts
                    .restore(id, u.first_seen, u.last_seen, u.allowed, u.refused);
            }
            // Files written before the two lists existed only say "called": kept as allowed.
            if r.routes_allowed.is_empty() && r.routes_refused.is_empty() {
                for name in &r.routes {
                    entry.routes_allowed.insert(self.route_id(name));
                }
            }
            self.entries.insert(key, Arc::new(entry));
        }
        self.evict_over_cap(&[0; 32]);
        LoadOutcome::Loaded(n)
    }

    fn set_aside(&self, path: &Path, why: String) -> LoadOutcome {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{}", unix_now()));
        let aside = PathBuf::from(aside);
        match std::fs::rename(path, &aside) {
            Ok(()) => LoadOutcome::SetAside(aside, why),
            Err(e) => LoadOutcome::SetAside(
                path.to_path_buf(),
                format!("{why}; could not rename it: {e}"),
            ),
        }
    }
}
