//! One token's signature, issuer, audience and type, verified with the issuer's keys by
//! `jsonwebtoken`; its claims read into a [`VerifiedToken`]. Time, binding and scope are checked
//! on every use by the caller (a verified token is cached and used again).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::KeySet;
use super::{Issuer, TokenFailure, TokenHeaders, VerifiedToken};
use crate::config::RawTokenIssuer;

/// Longer tokens are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `jsonwebtoken` checks for one algorithm: `exp`, `iss` and `aud` required, `nbf` checked.
pub(super) fn validation(alg: Algorithm, raw: &RawTokenIssuer, leeway: u64) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = leeway;
    v.validate_nbf = true;
    v.set_issuer(&[&raw.issuer]);
    v.set_audience(&raw.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

/// The header fields that choose the key, read before anything is verified.
pub struct TokenHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Reads the (unverified) JOSE header.
pub fn header(token: &str) -> Result<TokenHeader, TokenFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenFailure::Malformed);
    }
    let h = jsonwebtoken::decode_header(token).map_err(|_| TokenFailure::Malformed)?;
    Ok(TokenHeader {
        alg: h.alg,
        kid: h.kid,
        typ: h.typ,
    })
}

/// RFC 9068 §2.1: `typ` is `at+jwt` (any case, `application/` optional), and must be there: a
/// token without it could be an ID token or another JWT the issuer signs.
fn typ_allowed(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    })
}

/// Whether the token's claims (the second segment, base64url JSON) repeat a member name at any
/// depth: JSON parsers disagree on which of two `cnf` or `scope` members counts (serde takes the
/// last), so such a token is refused rather than read one way here and another upstream.
fn has_duplicate_members(token: &str) -> bool {
    let Some(payload) = token.split('.').nth(1) else {
        return true;
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(payload.as_bytes()) else {
        return true;
    };
    serde_json::from_slice::<UniqueMembers>(&json).is_err()
}

/// Any JSON value, refused (as a deserialisation error) if an object repeats a member name.
struct UniqueMembers;

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without repeated member names")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<UniqueMembers, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("repeated member name"));
            }
            map.next_value::<UniqueMembers>()?;
        }
        Ok(UniqueMembers)
    }
}

/// Verifies `token` with `keys` for `issuer`.
pub fn verify(issuer: &Issuer, keys: &KeySet, token: &str) -> Result<VerifiedToken, TokenFailure> {
    let h = header(token)?;
    if !typ_allowed(h.typ.as_deref()) {
        return Err(TokenFailure::Malformed);
    }
    if !issuer.algorithms.contains(&h.alg) {
        return Err(TokenFailure::AlgorithmNotAllowed);
    }
    let key = keys
        .find(h.kid.as_deref())
        .ok_or(TokenFailure::UnknownKey)?;
    if !key.algorithms.contains(&h.alg) {
        return Err(TokenFailure::AlgorithmNotAllowed);
    }
    let validation = issuer
        .validation_for(h.alg)
        .ok_or(TokenFailure::AlgorithmNotAllowed)?;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
        .map_err(|e| failure_of(e.kind()))?;
    if has_duplicate_members(token) {
        return Err(TokenFailure::Malformed);
    }
    let mut token = read_claims(data.claims, keys.generation)?;
    let client = token.client_id.as_deref().or(token.sub.as_deref());
    token.sighting = super::Sighting::new(&issuer.name, key.kid.as_deref(), h.alg, client);
    Ok(token)
}

fn failure_of(kind: &ErrorKind) -> TokenFailure {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TokenFailure::BadSignature,
        ErrorKind::ExpiredSignature => TokenFailure::Expired,
        ErrorKind::ImmatureSignature => TokenFailure::NotYetValid,
        ErrorKind::InvalidIssuer => TokenFailure::WrongIssuer,
        ErrorKind::InvalidAudience => TokenFailure::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenFailure::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenFailure::WrongAudience,
        _ => TokenFailure::Malformed,
    }
}

/// The claims the gateway uses, each of the type the profile gives it.
fn read_claims(
    claims: Map<String, Value>,
    keys_generation: u64,
) -> Result<VerifiedToken, TokenFailure> {
    let time = |name: &str| -> Result<Option<u64>, TokenFailure> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(TokenFailure::Malformed),
        }
    };
    let text = |name: &str| -> Result<Option<String>, TokenFailure> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenFailure::Malformed),
        }
    };
    // One issuer, as a string (RFC 7519 §4.1.1): `jsonwebtoken` also takes an array holding it.
    if !matches!(claims.get("iss"), Some(Value::String(_))) {
        return Err(TokenFailure::WrongIssuer);
    }
    let exp = time("exp")?.ok_or(TokenFailure::Malformed)?;
    let scopes: Vec<String> = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_ascii_whitespace().map(String::from).collect(),
        Some(_) => return Err(TokenFailure::Malformed),
    };
    let bound_to = match claims.get("cnf") {
        None => None,
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None if cnf.is_empty() => None,
            // Bound by another method (a DPoP key, `jkt`): certgate cannot check that proof, so
            // the token is not usable here as a bearer token either.
            None => return Err(TokenFailure::BindingMismatch),
            Some(Value::String(t)) => Some(thumbprint(t)?),
            Some(_) => return Err(TokenFailure::Malformed),
        },
        Some(_) => return Err(TokenFailure::Malformed),
    };
    let sub = text("sub")?;
    let client_id = text("client_id")?;
    let header = |v: Option<&str>| -> Result<Option<HeaderValue>, TokenFailure> {
        v.map(|s| HeaderValue::from_bytes(s.as_bytes()).map_err(|_| TokenFailure::Malformed))
            .transpose()
    };
    let joined = (!scopes.is_empty()).then(|| scopes.join(" "));
    let headers = TokenHeaders {
        subject: header(sub.as_deref())?,
        client_id: header(client_id.as_deref())?,
        scope: header(joined.as_deref())?,
    };
    Ok(VerifiedToken {
        keys_generation,
        exp,
        nbf: time("nbf")?,
        iat: time("iat")?,
        jti: text("jti")?,
        sub,
        client_id,
        scopes,
        bound_to,
        headers,
        claims,
        sighting: super::Sighting::default(),
    })
}

/// `x5t#S256`: base64url (no padding) of a SHA-256 digest.
fn thumbprint(t: &str) -> Result<[u8; 32], TokenFailure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(t.as_bytes())
        .map_err(|_| TokenFailure::Malformed)?;
    bytes.try_into().map_err(|_| TokenFailure::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_the_access_token_type_and_required() {
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(typ_allowed(Some(ok)), "{ok:?}");
        }
        assert!(!typ_allowed(None), "no typ");
        for bad in ["JWT", "jwt", "id_token", "at+jwt2", ""] {
            assert!(!typ_allowed(Some(bad)), "{bad:?}");
        }
    }

    #[test]
    fn repeated_member_names_are_found_at_any_depth() {
        let token = |json: &str| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(json));
        assert!(!has_duplicate_members(&token(
            r#"{"iss":"a","cnf":{"x5t#S256":"b"},"scope":"r","l":[{"a":1},{"a":2}]}"#
        )));
        for dup in [
            r#"{"scope":"r","scope":"admin"}"#,
            r#"{"cnf":{"x5t#S256":"a"},"cnf":{"x5t#S256":"b"}}"#,
            r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            r#"{"l":[{"tenant":"a","tenant":"b"}]}"#,
        ] {
            assert!(has_duplicate_members(&token(dup)), "{dup}");
        }
        assert!(has_duplicate_members("no-dots"));
    }

    #[test]
    fn thumbprints_are_32_bytes_of_unpadded_base64url() {
        let good = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(thumbprint(&good).unwrap(), [7u8; 32]);
        assert!(thumbprint(&URL_SAFE_NO_PAD.encode([7u8; 20])).is_err());
        assert!(thumbprint(&format!("{good}=")).is_err());
        assert!(thumbprint("not base64!").is_err());
    }

    #[test]
    fn another_confirmation_method_is_never_taken_as_unbound() {
        let c = serde_json::json!({"iss": "i", "exp": 10, "cnf": {"jkt": "abc"}});
        assert_eq!(
            read_claims(c.as_object().unwrap().clone(), 1).unwrap_err(),
            TokenFailure::BindingMismatch
        );
        let empty = serde_json::json!({"iss": "i", "exp": 10, "cnf": {}});
        assert!(
            read_claims(empty.as_object().unwrap().clone(), 1)
                .unwrap()
                .bound_to
                .is_none()
        );
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        let base = serde_json::json!({"iss": "i", "exp": 10, "sub": "a", "scope": "r w"});
        let ok = read_claims(base.as_object().unwrap().clone(), 1).unwrap();
        assert_eq!(ok.scopes, ["r", "w"]);
        for (k, v) in [
            ("sub", serde_json::json!(5)),
            ("scope", serde_json::json!(["r"])),
            ("exp", serde_json::json!("10")),
            ("iat", serde_json::json!(1.5)),
            ("cnf", serde_json::json!("x")),
            ("sub", serde_json::json!("line\nbreak")),
        ] {
            let mut c = base.as_object().unwrap().clone();
            c.insert(k.into(), v.clone());
            assert_eq!(
                read_claims(c, 1).unwrap_err(),
                TokenFailure::Malformed,
                "{k} = {v}"
            );
        }
        let mut array_iss = base.as_object().unwrap().clone();
        array_iss.insert("iss".into(), serde_json::json!(["i"]));
        assert_eq!(
            read_claims(array_iss, 1).unwrap_err(),
            TokenFailure::WrongIssuer
        );
    }
}
