//! What a route asks of a verified access token: scopes and claims (RFC 9068 / RFC 8693).
//! Pure: the token was verified and bound to the certificate by [`crate::authn::token`].

use http::HeaderValue;
use serde_json::Value;

use crate::authn::token::{TokenFailure, VerifiedToken};
use crate::config::RawRouteToken;

/// A route's `token = { issuer, scopes, claims, forward }`, compiled.
#[derive(Debug)]
pub struct TokenRequirement {
    /// Index into the snapshot's token issuers.
    pub issuer: usize,
    pub scopes: Vec<String>,
    /// Claim name and required value.
    pub claims: Vec<(String, String)>,
    /// Forward `Authorization` upstream.
    pub forward: bool,
    /// The RFC 6750 challenge for a token without the scope or claims:
    /// `Bearer realm="certgate", error="insufficient_scope"[, scope="…"]`.
    pub insufficient_scope_challenge: HeaderValue,
}

impl TokenRequirement {
    /// Errors are `(key, problem)`, the key relative to the route.
    pub fn compile(
        raw: &RawRouteToken,
        issuer_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, (&'static str, String)> {
        let issuer = issuer_index(&raw.issuer).ok_or_else(|| {
            (
                "token.issuer",
                format!("no [token_issuers.{}] is defined", raw.issuer),
            )
        })?;
        for s in &raw.scopes {
            // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err((
                    "token.scopes",
                    format!(
                        "{s:?} is not a scope token (printable ASCII, no space, '\"' or '\\\\')"
                    ),
                ));
            }
        }
        let mut challenge = String::from("Bearer realm=\"certgate\", error=\"insufficient_scope\"");
        if !raw.scopes.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", raw.scopes.join(" ")));
        }
        Ok(Self {
            issuer,
            scopes: raw.scopes.clone(),
            claims: raw
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            forward: raw.forward,
            insufficient_scope_challenge: HeaderValue::from_str(&challenge)
                .map_err(|_| ("token.scopes", "cannot form a challenge header".to_string()))?,
        })
    }

    /// Every route scope is granted and every claim has its value; else the first that is
    /// not.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), Unmet<'_>> {
        if let Some(s) = self
            .scopes
            .iter()
            .find(|s| !token.scopes.iter().any(|g| g == *s))
        {
            return Err(Unmet::Scope(s));
        }
        if let Some((name, _)) = self
            .claims
            .iter()
            .find(|(name, want)| !claim_has(token.claims.get(name), want))
        {
            return Err(Unmet::Claim(name));
        }
        Ok(())
    }
}

/// The requirement a token does not meet: named in the log and by `explain`, never to the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet<'a> {
    Scope(&'a str),
    Claim(&'a str),
}

impl Unmet<'_> {
    pub fn failure(self) -> TokenFailure {
        match self {
            Self::Scope(_) => TokenFailure::InsufficientScope,
            Self::Claim(_) => TokenFailure::ClaimMismatch,
        }
    }
}

impl std::fmt::Display for Unmet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scope(s) => write!(f, "scope {s}"),
            Self::Claim(c) => write!(f, "claim {c}"),
        }
    }
}

/// The challenge for a token whose claims, not scopes, fall short: naming the route's scopes
/// would point at scopes the token has.
pub const CLAIM_CHALLENGE: &str = "Bearer realm=\"certgate\", error=\"insufficient_scope\"";

/// A string claim equal to `want`, or an array claim with `want` as a member.
fn claim_has(claim: Option<&Value>, want: &str) -> bool {
    match claim {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(scopes: &[&str], claims: &[(&str, &str)]) -> TokenRequirement {
        let raw = RawRouteToken {
            issuer: "corp".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            forward: false,
        };
        TokenRequirement::compile(&raw, |_| Some(0)).unwrap()
    }

    fn token(scopes: &[&str], claims: serde_json::Value) -> VerifiedToken {
        VerifiedToken {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn every_scope_is_needed() {
        let r = requirement(&["payments:read", "payments:write"], &[]);
        let both = token(
            &["x", "payments:write", "payments:read"],
            serde_json::json!({}),
        );
        assert_eq!(r.check(&both), Ok(()));
        let one = token(&["payments:read"], serde_json::json!({}));
        assert_eq!(r.check(&one), Err(Unmet::Scope("payments:write")));
        // A scope is a whole word, not a prefix.
        let prefix = token(&["payments:read", "payments:writer"], serde_json::json!({}));
        assert_eq!(r.check(&prefix), Err(Unmet::Scope("payments:write")));
        assert_eq!(
            Unmet::Scope("payments:write").failure(),
            TokenFailure::InsufficientScope
        );
        assert_eq!(
            r.insufficient_scope_challenge,
            "Bearer realm=\"certgate\", error=\"insufficient_scope\", scope=\"payments:read payments:write\""
        );
    }

    #[test]
    fn claims_match_strings_or_array_members() {
        let r = requirement(&[], &[("tenant", "acme")]);
        let t = |c| token(&[], c);
        assert_eq!(r.check(&t(serde_json::json!({"tenant": "acme"}))), Ok(()));
        assert_eq!(
            r.check(&t(serde_json::json!({"tenant": ["x", "acme"]}))),
            Ok(())
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"tenant": "acme2"}),
            serde_json::json!({"tenant": ["x"]}),
            serde_json::json!({"tenant": 1}),
            serde_json::json!({"tenant": {"acme": true}}),
        ] {
            assert_eq!(
                r.check(&t(bad.clone())),
                Err(Unmet::Claim("tenant")),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_scopes_and_unknown_issuers_are_refused() {
        let raw = |scope: &str| RawRouteToken {
            issuer: "corp".into(),
            scopes: vec![scope.into()],
            claims: Default::default(),
            forward: false,
        };
        assert!(TokenRequirement::compile(&raw("a b"), |_| Some(0)).is_err());
        assert!(TokenRequirement::compile(&raw("a\"b"), |_| Some(0)).is_err());
        assert!(TokenRequirement::compile(&raw(""), |_| Some(0)).is_err());
        assert!(TokenRequirement::compile(&raw("ok"), |_| None).is_err());
    }
}
