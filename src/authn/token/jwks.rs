//! A JSON Web Key Set (RFC 7517) compiled into verification keys: each key with the algorithms
//! it may verify — what its type and curve support, narrowed by its own `alg` and by the
//! issuer's allow-list. Symmetric (`oct`) keys and encryption keys are never used.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document accepted (file or URL).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a JWKS document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Fetch(#[from] crate::authn::fetch::FetchError),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a JWKS document (a JSON object with \"keys\"): {0}")]
    NotJwks(serde_json::Error),
    /// Every key was skipped (the reasons, joined) or there were none.
    #[error("no usable key: {0}")]
    NoUsableKey(String),
    #[error("{0}")]
    Invalid(String),
}

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    /// What the key may verify: supported by its type, allowed by its `alg` and the issuer.
    pub algorithms: Vec<Algorithm>,
    pub(super) decoding: DecodingKey,
}

/// The usable keys of one JWKS document.
pub struct KeySet {
    /// Unique per key set loaded in this process: a verified token is trusted only while the
    /// keys it was verified with are current.
    pub generation: u64,
    pub keys: Vec<Key>,
    /// Keys left out and why (for `check` and the log).
    pub skipped: Vec<String>,
}

impl KeySet {
    /// A key set with no keys (a JWKS URL not fetched yet): every token is `unknown_key`.
    pub fn empty() -> Self {
        Self {
            generation: next_generation(),
            keys: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Parses a JWKS document. Keys that cannot be used are skipped (and listed); a document
    /// that is not a JWKS, or has no usable key, is an error.
    pub fn parse(bytes: &[u8], allowed: &[Algorithm]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge(MAX_JWKS_BYTES));
        }
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(bytes).map_err(JwksError::NotJwks)?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, value) in doc.keys.into_iter().enumerate() {
            let name = value.get("kid").and_then(|k| k.as_str()).map_or_else(
                || format!("keys[{i}]"),
                |k| format!("keys[{i}] (kid {k:?})"),
            );
            match compile_key(value, allowed) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("{name}: {why}")),
            }
        }
        if keys.is_empty() {
            let why = if skipped.is_empty() {
                "no keys".to_string()
            } else {
                skipped.join("; ")
            };
            return Err(JwksError::NoUsableKey(why));
        }
        Ok(Self {
            generation: next_generation(),
            keys,
            skipped,
        })
    }

    /// The key a token names. A token without `kid` may use the only key of a one-key set.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

fn compile_key(value: serde_json::Value, allowed: &[Algorithm]) -> Result<Key, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("not a signature key (\"use\" is not \"sig\")".into());
    }
    let supported: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (\"oct\") keys are never used".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let own = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            a.to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("\"alg\" {a:?} is not a signature algorithm"))?,
        ),
    };
    if let Some(a) = own
        && !supported.contains(&a)
    {
        return Err(format!("\"alg\" {a:?} does not fit the key type"));
    }
    let algorithms: Vec<Algorithm> = supported
        .iter()
        .copied()
        .filter(|a| own.is_none_or(|o| o == *a) && allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return Err(format!(
            "its algorithm ({}) is not in the issuer's algorithms",
            own.map_or_else(|| format!("{supported:?}"), |a| format!("{a:?}"))
        ));
    }
    let decoding =
        DecodingKey::from_jwk(&jwk).map_err(|e| format!("key material is not usable: {e}"))?;
    Ok(Key {
        kid: jwk.common.key_id,
        algorithms,
        decoding,
    })
}

fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
