//! Phase: the route's access token. Taken only from `Authorization: Bearer` (RFC 6750 §2.1);
//! a token in the query string, in a form body, or two `Authorization` headers are refused as
//! `invalid_request`. The token is checked for the route's issuer ([`crate::authn::token`]),
//! then the route's scopes and claims ([`crate::authz::TokenRequirement`]).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Uri};

use crate::authn::token::check::{Refusal, authenticate};
use crate::authn::token::{TokenFailure, VerifiedToken};
use crate::authz::{CLAIM_CHALLENGE, TokenRequirement, TokenVerdict};
use crate::http::conn::ConnContext;
use crate::http::error::{RequestError, TokenRefused};
use crate::http::record::{Exchange, TokenRecord};
use crate::state::snapshot::Snapshot;
use crate::util::time::coarse_unix_now;

/// The token of a request on a route that needs one, as the token phase found it: verified
/// for the route's issuer here ([`crate::authn::token`]); its scopes and claims, and what a
/// refusal means on the route, are [`crate::authz::decide`]'s.
#[derive(Default)]
pub(super) struct Presented {
    /// The token came in a refused way (query string, form, two headers): 400 on any route.
    invalid_request: Option<&'static str>,
    /// The token whose signature verified (also when its binding or time then failed).
    token: Option<Arc<VerifiedToken>>,
    /// The connection had not presented this token before.
    fresh: bool,
}

impl Presented {
    /// Verifies the request's token for `need`'s issuer.
    pub(super) fn verify<B>(
        &mut self,
        ctx: &ConnContext,
        snapshot: &Snapshot,
        req: &Request<B>,
        need: &TokenRequirement,
    ) -> Result<&VerifiedToken, TokenFailure> {
        let issuer = snapshot
            .identity
            .token_issuers
            .get(need.issuer)
            .ok_or(TokenFailure::UnknownKey)?;
        let token = match presented_token(req.headers(), req.uri()) {
            Err(why) => {
                self.invalid_request = Some(why);
                return Err(TokenFailure::Malformed);
            }
            Ok(None) => return Err(TokenFailure::Missing),
            Ok(Some(token)) => token,
        };
        match authenticate(
            issuer,
            token,
            &ctx.tokens,
            ctx.identity.as_deref().map(|i| &i.sha256),
            coarse_unix_now().max(0) as u64,
        ) {
            Ok(a) => {
                self.fresh = a.fresh;
                Ok(self.token.insert(a.token))
            }
            Err(Refusal { failure, token }) => {
                self.token = token;
                Err(failure)
            }
        }
    }

    /// Records what the decision made of the token, counts it for its issuer, and answers:
    /// the token to vouch for upstream, or the refusal.
    pub(super) fn settle(
        self,
        snapshot: &Snapshot,
        need: &TokenRequirement,
        verdict: TokenVerdict<'_>,
        enforced: bool,
        x: &mut Exchange,
    ) -> Result<Option<Arc<VerifiedToken>>, RequestError> {
        let issuer = snapshot.identity.token_issuers.get(need.issuer);
        let failure = match verdict {
            TokenVerdict::Accepted => None,
            TokenVerdict::Refused { failure, unmet } => {
                x.token_unmet = unmet.map(|u| u.to_string());
                Some(failure)
            }
        };
        if let Some(issuer) = issuer {
            issuer.count(failure.map_or(Ok(()), Err));
        }
        let Some(failure) = failure else {
            let token = self
                .token
                .ok_or(RequestError::Internal("accepted token missing"))?;
            x.token = Some(TokenRecord::verified(
                need.issuer,
                token.clone(),
                self.fresh,
            ));
            return Ok(Some(token));
        };
        x.token = Some(TokenRecord::refused(need.issuer, failure, self.token));
        if let Some(why) = self.invalid_request {
            return Err(RequestError::TokenRequest(why));
        }
        if enforced {
            return Err(refusal(need, failure));
        }
        // Audit: forwarded without any x-token-* header; nothing about the token is vouched for.
        Ok(None)
    }
}

fn refusal(need: &TokenRequirement, failure: TokenFailure) -> RequestError {
    let scope_challenge = match failure {
        TokenFailure::InsufficientScope => Some(need.insufficient_scope_challenge.clone()),
        TokenFailure::ClaimMismatch => Some(HeaderValue::from_static(CLAIM_CHALLENGE)),
        _ => None,
    };
    RequestError::Token(TokenRefused {
        failure,
        scope_challenge,
    })
}

/// The bearer token of a request: `Ok(None)` when there is none (or another scheme), `Err`
/// with the reason when it comes in a way that is refused. A token that is not `token68`
/// syntax is passed on to fail as malformed.
pub fn presented_token<'h>(
    headers: &'h HeaderMap,
    uri: &Uri,
) -> Result<Option<&'h str>, &'static str> {
    if uri.query().is_some_and(has_access_token_param) {
        return Err("access token in the query string (send it in Authorization: Bearer)");
    }
    if is_form(headers) && headers.get(header::AUTHORIZATION).is_none() {
        // RFC 6750 §2.2 form-encoded tokens are not accepted; a form without Authorization is
        // most likely carrying one.
        return Err(
            "form-encoded body without Authorization (send the token in Authorization: Bearer)",
        );
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    // UTF-8 (SIMD-checked) rather than `to_str`'s byte-by-byte scan: a token is ASCII, and
    // anything else fails as malformed when it is verified.
    let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
        return Ok(Some(""));
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    Ok(Some(rest.trim_start_matches(' ')))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn has_access_token_param(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        name == "access_token"
            || percent_encoding::percent_decode_str(name).decode_utf8_lossy() == "access_token"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_scheme_any_case() {
        let u = Uri::from_static("/p");
        for v in ["Bearer abc", "bearer abc", "BEARER  abc"] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(presented_token(&h, &u), Ok(Some("abc")), "{v}");
        }
        for v in ["Basic abc", "Bearerabc", "Token abc"] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(presented_token(&h, &u), Ok(None), "{v}");
        }
        assert_eq!(presented_token(&HeaderMap::new(), &u), Ok(None));
    }

    #[test]
    fn tokens_elsewhere_are_invalid_requests() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(presented_token(&h, &Uri::from_static("/p")).is_err());
        for q in [
            "/p?access_token=x",
            "/p?a=1&access_token=x",
            "/p?access%5Ftoken=x",
            "/p?access_token",
        ] {
            let u: Uri = q.parse().unwrap();
            assert!(presented_token(&HeaderMap::new(), &u).is_err(), "{q}");
        }
        let ok: Uri = "/p?my_access_token=x&access_tokens=1".parse().unwrap();
        assert_eq!(presented_token(&HeaderMap::new(), &ok), Ok(None));
        let form = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )]);
        assert!(presented_token(&form, &Uri::from_static("/p")).is_err());
    }
}
