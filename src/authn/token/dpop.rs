//! DPoP proofs (RFC 9449 §4.3): the checks of one `DPoP` header against the request it came
//! with, in the RFC's order, each with its own failure. Replay (the `jti` store), nonces and the
//! token's `cnf.jkt` are the caller's: this module says what the proof proves — the RFC 7638
//! thumbprint of the key that signed it, its `jti` and `iat`.
//!
//! Not wired into the request path yet (issue 33): this is the verifier it will call.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Seconds a proof may be dated ahead of the gateway's clock.
pub const FUTURE_LEEWAY: u64 = 5;
/// A proof larger than this is not read.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// What a valid proof proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what `cnf.jkt` must equal.
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
}

/// Why a proof is refused (each one `invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not one compact JWS")]
    Malformed,
    #[error("typ is not dpop+jwt")]
    Type,
    #[error("alg not allowed")]
    Algorithm,
    #[error("jwk missing, not a public key, or not usable")]
    Key,
    #[error("signature does not verify with the embedded key")]
    Signature,
    #[error("htm is not the request's method")]
    Method,
    #[error("htu is not the request's URL")]
    Url,
    #[error("iat outside the allowed window")]
    Time,
    #[error("jti missing")]
    Jti,
    #[error("ath is not the access token's hash")]
    TokenHash,
}

/// The request a proof must match.
pub struct Expect<'a> {
    pub method: &'a str,
    /// The URL the client used: scheme, authority and path (no query, no fragment).
    pub url: &'a str,
    /// The access token presented with the proof (`ath` = base64url SHA-256 of it).
    pub access_token: Option<&'a str>,
    pub algorithms: &'a [Algorithm],
    pub max_age: u64,
    pub now: u64,
}

/// Checks one `DPoP` header value.
pub fn verify(proof: &str, e: &Expect<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES || proof.split('.').count() != 3 {
        return Err(ProofError::Malformed);
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| ProofError::Malformed)?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(ProofError::Type);
    }
    if !e.algorithms.contains(&header.alg) || is_symmetric(header.alg) {
        return Err(ProofError::Algorithm);
    }
    let jwk = header.jwk.as_ref().ok_or(ProofError::Key)?;
    if has_private_members(proof)? {
        return Err(ProofError::Key);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| ProofError::Key)?;
    let claims = signed_claims(proof, &key, header.alg)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(e.method) {
        return Err(ProofError::Method);
    }
    if !same_url(text("htu").unwrap_or(""), e.url) {
        return Err(ProofError::Url);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(ProofError::Time)?;
    if iat > e.now + FUTURE_LEEWAY || iat + e.max_age < e.now {
        return Err(ProofError::Time);
    }
    let jti = text("jti").filter(|j| !j.is_empty() && j.len() <= 256);
    let jti = jti.ok_or(ProofError::Jti)?.to_string();
    if let Some(token) = e.access_token {
        let want = URL_SAFE_NO_PAD.encode(crate::util::digest::sha256(token.as_bytes()));
        if text("ath") != Some(want.as_str()) {
            return Err(ProofError::TokenHash);
        }
    }
    Ok(Proof {
        jkt: thumbprint(jwk)?,
        jti,
        iat,
    })
}

/// RFC 7638 SHA-256 thumbprint, base64url.
pub fn thumbprint(jwk: &Jwk) -> Result<String, ProofError> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| ProofError::Key)
}

fn is_symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The header's `jwk` must be a public key: private (`d`, `p`, `q`, `dp`, `dq`, `qi`) or
/// symmetric (`k`) members refuse the proof.
fn has_private_members(proof: &str) -> Result<bool, ProofError> {
    let head = proof.split('.').next().ok_or(ProofError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| ProofError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed)?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::Key);
    };
    Ok(["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m)))
}

/// The claims, once the signature verified with `key` (no registered-claim checks here: the
/// proof's own rules follow).
fn signed_claims(
    proof: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<Map<String, Value>, ProofError> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(proof, key, &v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => ProofError::Signature,
            _ => ProofError::Malformed,
        })
}

/// `htu` against the URL the client used (RFC 9449 §4.3: no query or fragment; scheme and
/// host compared case-insensitively; a default port equals no port).
fn same_url(htu: &str, used: &str) -> bool {
    let (Some(a), Some(b)) = (normalise(htu), normalise(used)) else {
        return false;
    };
    a == b
}

fn normalise(url: &str) -> Option<(String, String, u16, String)> {
    let url = url.split(['?', '#']).next()?;
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default);
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    Some((scheme, host, port, path))
}

#[cfg(test)]
mod tests;
