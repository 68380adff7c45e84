//! The token of one request, checked for one issuer: verified (or found in a cache), in time,
//! and bound to the connection's certificate. Scope and claims are the route's business
//! ([`crate::authz::TokenRequirement`]).

use std::sync::Arc;

use super::cache::{ConnTokenCache, token_digest};
use super::{Issuer, TokenFailure, VerifiedToken, binding, jwt};

/// A refused token, with its verified claims when the signature was good (for the log: the
/// `sub` and `jti` of a token replayed with another certificate are worth recording).
#[derive(Debug)]
pub struct Refusal {
    pub failure: TokenFailure,
    pub token: Option<Arc<VerifiedToken>>,
}

impl From<TokenFailure> for Refusal {
    fn from(failure: TokenFailure) -> Self {
        Self {
            failure,
            token: None,
        }
    }
}

/// An accepted token.
#[derive(Debug)]
pub struct Authenticated {
    pub token: Arc<VerifiedToken>,
    /// False when it is the token this connection presented last (nothing new to record).
    pub fresh: bool,
}

/// Checks `token` for `issuer` on a connection whose leaf has SHA-256 `leaf` (`None`: no
/// certificate). `now` is Unix seconds.
pub fn authenticate(
    issuer: &Arc<Issuer>,
    token: &str,
    conn: &ConnTokenCache,
    leaf: Option<&[u8; 32]>,
    now: u64,
) -> Result<Authenticated, Refusal> {
    let keys = issuer.keys.load();
    let mut fresh = false;
    let verified = match conn
        .get(issuer, token)
        .filter(|t| t.keys_generation == keys.generation)
    {
        Some(t) => t,
        None => {
            fresh = true;
            let digest = token_digest(token);
            let t = match issuer.cache.get(&digest, keys.generation) {
                Some(t) => t,
                None => {
                    let t = jwt::verify(issuer, &keys, token).map_err(|f| {
                        if f == TokenFailure::UnknownKey
                            && let Some(r) = &issuer.remote
                        {
                            r.refetch_soon();
                        }
                        Refusal::from(f)
                    })?;
                    let t = Arc::new(t);
                    issuer.cache.insert(digest, t.clone(), now);
                    t
                }
            };
            conn.put(issuer, token, t.clone());
            t
        }
    };
    verified
        .check_time(now, issuer.leeway)
        .and_then(|()| binding::check(&verified, leaf, issuer.require_binding))
        .map_err(|failure| Refusal {
            failure,
            token: Some(verified.clone()),
        })?;
    Ok(Authenticated {
        token: verified,
        fresh,
    })
}
