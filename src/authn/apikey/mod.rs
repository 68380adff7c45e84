//! Legacy static API keys, kept only to move their holders to certificates: the issued key
//! shape ([`format`]), the keys file compiled into a lookup by id, and the check of a presented
//! key — HMAC-SHA-256 with a pepper, compared in constant time. Imported legacy keys (any
//! shape) are stored as argon2id and checked off the async threads ([`ApiKeys::check_legacy`]).

mod cache;
pub mod format;

pub use cache::ConnKeyCache;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use http::HeaderValue;

use crate::config::{Cutover, RawKey, RawKeysFile};

/// One key's record, compiled.
#[derive(Debug)]
pub struct KeyRecord {
    /// Not secret: sent upstream as `x-client-api-key-id`.
    pub id: String,
    pub owner: Arc<str>,
    hash: StoredHash,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of 00:00 UTC on the sunset day: refused from then on.
    pub sunset: i64,
    pub sunset_day: String,
    pub routes: Vec<String>,
    pub cutover: Cutover,
    pub revoked: bool,
    /// `Deprecation: @<created>` (RFC 9745).
    pub deprecation_header: HeaderValue,
    /// `Sunset: <IMF-fixdate>` (RFC 8594).
    pub sunset_header: HeaderValue,
    /// `x-client-api-key-id` and `x-client-owner` for the upstream.
    pub id_header: HeaderValue,
    pub owner_header: HeaderValue,
    /// What rate limits and quotas count this key's requests under (as a certificate's
    /// SHA-256 for certificates): SHA-256 of "api-key:" and the id.
    pub limit_id: [u8; 32],
    /// `api_key:<id>`: the identity anomaly signals name it by.
    pub label: String,
}

#[derive(Debug)]
enum StoredHash {
    /// `hmac-sha256:<hex>`: HMAC-SHA-256 of the whole key under the pepper.
    Hmac([u8; 32]),
    /// `argon2id:<PHC string>`: an imported legacy key.
    Argon2(String),
}

/// Why a presented key is refused; the label is the `result` of
/// `certgate_api_key_requests_total` and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    /// Not an issued key's shape, or its check characters are wrong: no lookup was made.
    Malformed,
    /// Well formed, but no record has its id, or the secret is not the record's.
    Unknown,
    Revoked,
    Sunset,
}

impl KeyFailure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Sunset => "sunset",
        }
    }
}

/// Why the keys file (or the pepper) cannot be used; `key` names the record (`key[3].hash`).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct KeysFileError {
    pub key: String,
    pub problem: String,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> KeysFileError {
    KeysFileError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The pepper: the HMAC key of issued keys.
pub struct Pepper(hmac::Key);

impl Pepper {
    /// At least 32 bytes, used as they are.
    pub fn new(bytes: &[u8]) -> Result<Self, KeysFileError> {
        if bytes.len() < 32 {
            return Err(invalid(
                "pepper_file",
                format!("{} bytes; at least 32 are needed", bytes.len()),
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The stored form of an issued key: `hmac-sha256:<hex>`.
    pub fn hash(&self, key: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(hmac::sign(&self.0, key.as_bytes()))
        )
    }
}

/// The stored form of an imported legacy key: `argon2id:<PHC string>` (a random salt).
pub fn hash_legacy(key: &str) -> Result<String, KeysFileError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| invalid("hash", "no randomness for a salt"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| invalid("hash", e.to_string()))?;
    let phc = argon2::Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .map_err(|e| invalid("hash", e.to_string()))?;
    Ok(format!("argon2id:{phc}"))
}

/// The keys file, compiled: records by id, and the imported legacy ones apart.
pub struct ApiKeys {
    pepper: Pepper,
    by_id: HashMap<String, Arc<KeyRecord>>,
    legacy: Vec<Arc<KeyRecord>>,
    /// Legacy keys already checked, by their HMAC under the pepper: the record's index in
    /// `legacy`, or `None` (no record): argon2 runs once per distinct presented value.
    legacy_seen: ArcSwap<HashMap<[u8; 32], Option<usize>>>,
    /// This set's identity for connections' caches: a reload brings a new set.
    set: Arc<()>,
}

/// Legacy checks remembered; past this the memory starts over.
const LEGACY_SEEN_MAX: usize = 10_000;

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Compiles the keys file. `route_exists` says whether a route name is configured.
    pub fn compile(
        raw: &RawKeysFile,
        pepper: Pepper,
        route_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, KeysFileError> {
        let mut by_id = HashMap::new();
        let mut legacy = Vec::new();
        for (i, k) in raw.key.iter().enumerate() {
            let record = Arc::new(compile_record(i, k, &route_exists)?);
            if matches!(record.hash, StoredHash::Argon2(_)) {
                legacy.push(record.clone());
            }
            if by_id.insert(record.id.clone(), record).is_some() {
                return Err(invalid(
                    format!("key[{i}].id"),
                    format!("{:?} is used twice", k.id),
                ));
            }
        }
        Ok(Self {
            pepper,
            by_id,
            legacy,
            legacy_seen: ArcSwap::from_pointee(HashMap::new()),
            set: Arc::new(()),
        })
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = &Arc<KeyRecord>> {
        self.by_id.values()
    }

    /// Whether imported legacy keys exist (then a value that is not an issued key's shape is
    /// checked against them, off the async threads).
    pub fn has_legacy(&self) -> bool {
        !self.legacy.is_empty()
    }

    /// [`ApiKeys::check`], answered from `conn` when the connection proved the same key
    /// against this set before (revocation and sunset are checked either way).
    pub fn check_on(
        &self,
        conn: &ConnKeyCache,
        presented: &str,
        now: i64,
    ) -> Result<Arc<KeyRecord>, KeyFailure> {
        if let Some(known) = conn.get(&self.set, presented, now) {
            return known;
        }
        let record = self.check(presented, now)?.clone();
        conn.put(&self.set, presented, record.clone());
        Ok(record)
    }

    /// Checks an issued key: shape and check characters (no lookup when they fail), the
    /// record by id, the HMAC in constant time, then revocation and sunset at `now`.
    pub fn check(&self, presented: &str, now: i64) -> Result<&Arc<KeyRecord>, KeyFailure> {
        let id = format::parse(presented)
            .map_err(|_| KeyFailure::Malformed)?
            .id;
        let record = self.by_id.get(id).ok_or(KeyFailure::Unknown)?;
        let StoredHash::Hmac(stored) = &record.hash else {
            return Err(KeyFailure::Unknown);
        };
        hmac::verify(&self.pepper.0, presented.as_bytes(), stored)
            .map_err(|_| KeyFailure::Unknown)?;
        record.usable(now).map(|()| record)
    }

    /// Checks a value against the imported legacy keys (argon2id: slow by design, so call it
    /// off the async threads). Each distinct value is checked once; later presentations are
    /// answered from memory.
    pub fn check_legacy(&self, presented: &str, now: i64) -> Result<Arc<KeyRecord>, KeyFailure> {
        let tag: [u8; 32] = hmac::sign(&self.pepper.0, presented.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| KeyFailure::Unknown)?;
        let known = self.legacy_seen.load().get(&tag).copied();
        let found = match known {
            Some(found) => found,
            None => {
                let found = self.legacy.iter().position(|r| r.matches_legacy(presented));
                self.legacy_seen.rcu(|seen| {
                    let mut seen = if seen.len() >= LEGACY_SEEN_MAX {
                        HashMap::new()
                    } else {
                        (**seen).clone()
                    };
                    seen.insert(tag, found);
                    seen
                });
                found
            }
        };
        let record = found
            .and_then(|i| self.legacy.get(i))
            .ok_or(KeyFailure::Unknown)?;
        record.usable(now).map(|()| record.clone())
    }
}

impl KeyRecord {
    /// How the key is stored: `hmac-sha256` (issued) or `argon2id` (imported legacy key).
    pub fn hash_kind(&self) -> &'static str {
        match self.hash {
            StoredHash::Hmac(_) => "hmac-sha256",
            StoredHash::Argon2(_) => "argon2id",
        }
    }

    fn usable(&self, now: i64) -> Result<(), KeyFailure> {
        if self.revoked {
            return Err(KeyFailure::Revoked);
        }
        if now >= self.sunset {
            return Err(KeyFailure::Sunset);
        }
        Ok(())
    }

    fn matches_legacy(&self, presented: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let StoredHash::Argon2(phc) = &self.hash else {
            return false;
        };
        PasswordHash::new(phc).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(presented.as_bytes(), &h)
                .is_ok()
        })
    }

    /// Whether the record lets the key call `route`.
    pub fn allows(&self, route: &str) -> bool {
        self.routes.iter().any(|r| r == route)
    }
}

fn compile_record(
    i: usize,
    k: &RawKey,
    route_exists: &impl Fn(&str) -> bool,
) -> Result<KeyRecord, KeysFileError> {
    let key = |field: &str| format!("key[{i}].{field}");
    // A key in the file instead of its hash is refused without ever printing it.
    for (field, value) in [("id", &k.id), ("owner", &k.owner), ("hash", &k.hash)] {
        if format::looks_like_key(value) {
            return Err(invalid(
                key(field),
                "holds a plaintext API key: the file keeps hashes only (certgate keys new / keys import write them); remove it and revoke the key",
            ));
        }
    }
    if k.id.is_empty() || !k.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(key("id"), "letters, digits and '-' only"));
    }
    if k.owner.trim().is_empty() {
        return Err(invalid(key("owner"), "must name the key's owner"));
    }
    let hash = stored_hash(&k.hash).map_err(|p| invalid(key("hash"), p))?;
    let created = humantime::parse_rfc3339_weak(&k.created).map_err(|e| {
        invalid(
            key("created"),
            format!("{:?} is not an RFC 3339 time: {e}", k.created),
        )
    })?;
    let created = unix(created);
    let sunset = humantime::parse_rfc3339(&format!("{}T00:00:00Z", k.sunset)).map_err(|_| {
        invalid(
            key("sunset"),
            format!("{:?} is not a YYYY-MM-DD day", k.sunset),
        )
    })?;
    if k.routes.is_empty() {
        return Err(invalid(
            key("routes"),
            "must list the routes the key may call",
        ));
    }
    if let Some(r) = k.routes.iter().find(|r| !route_exists(r)) {
        return Err(invalid(key("routes"), format!("no route is named {r:?}")));
    }
    Ok(KeyRecord {
        id: k.id.clone(),
        owner: Arc::from(k.owner.as_str()),
        hash,
        created,
        sunset: unix(sunset),
        sunset_day: k.sunset.clone(),
        routes: k.routes.clone(),
        cutover: k.cutover,
        revoked: k.revoked,
        deprecation_header: HeaderValue::from_str(&format!("@{created}"))
            .map_err(|_| invalid(key("created"), "cannot form Deprecation"))?,
        sunset_header: HeaderValue::from_str(&httpdate::fmt_http_date(sunset))
            .map_err(|_| invalid(key("sunset"), "cannot form Sunset"))?,
        id_header: HeaderValue::from_str(&k.id)
            .map_err(|_| invalid(key("id"), "not a header value"))?,
        owner_header: HeaderValue::from_str(&k.owner).map_err(|_| {
            invalid(
                key("owner"),
                "printable ASCII only (it is sent upstream as x-client-owner)",
            )
        })?,
        limit_id: crate::util::digest::sha256(format!("api-key:{}", k.id).as_bytes()),
        label: format!("api_key:{}", k.id),
    })
}

fn stored_hash(value: &str) -> Result<StoredHash, String> {
    if let Some(hex) = value.strip_prefix("hmac-sha256:") {
        let bytes = hex::decode(hex).map_err(|_| "hmac-sha256: not hex".to_string())?;
        return bytes
            .try_into()
            .map(StoredHash::Hmac)
            .map_err(|_| "hmac-sha256: must be 32 bytes (64 hex digits)".into());
    }
    if let Some(phc) = value.strip_prefix("argon2id:") {
        argon2::password_hash::PasswordHash::new(phc)
            .map_err(|e| format!("argon2id: not a PHC string ({e})"))?;
        return Ok(StoredHash::Argon2(phc.to_string()));
    }
    Err("must be hmac-sha256:<hex> (certgate keys new) or argon2id:<PHC string> (certgate keys import)".into())
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
