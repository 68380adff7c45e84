//! The last API key verified on one connection. A keep-alive client sends the same key with
//! every request: after the first, the key is compared (in constant time) with the one this
//! connection already proved, instead of parsing it and computing its HMAC again. The entry
//! belongs to one keys set (a reload that changes the keys file starts over), and the record's
//! revocation and sunset are checked on every request as usual.

use std::sync::{Arc, Mutex, Weak};

use super::{KeyFailure, KeyRecord};

#[derive(Default)]
pub struct ConnKeyCache {
    last: Mutex<Option<Entry>>,
}

struct Entry {
    /// The keys set it was verified against (its settings' allocation).
    set: Weak<()>,
    key: Box<[u8]>,
    record: Arc<KeyRecord>,
}

impl ConnKeyCache {
    /// The record of `presented` when this connection proved that key against `set` before;
    /// `None` to verify it in full.
    pub fn get(
        &self,
        set: &Arc<()>,
        presented: &str,
        now: i64,
    ) -> Option<Result<Arc<KeyRecord>, KeyFailure>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let e = last.as_ref()?;
        let same_set = std::ptr::eq(e.set.as_ptr(), Arc::as_ptr(set));
        let same_key =
            aws_lc_rs::constant_time::verify_slices_are_equal(&e.key, presented.as_bytes()).is_ok();
        (same_set && same_key).then(|| e.record.usable(now).map(|()| e.record.clone()))
    }

    pub fn put(&self, set: &Arc<()>, presented: &str, record: Arc<KeyRecord>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(Entry {
            set: Arc::downgrade(set),
            key: presented.as_bytes().into(),
            record,
        });
    }
}
