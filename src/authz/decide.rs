//! The one authorisation decision: what a route's policy, the owner policy, the route's token
//! requirement, audit and the shadow policy make of one request from one credential. The
//! request path enforces the [`Decision`] and records it; `explain` prints it. Pure: no I/O —
//! the token, when the route needs one, is verified by the caller when `decide` asks for it.

use crate::authn::apikey::KeyRecord;
use crate::authn::identity::ClientIdentity;
use crate::authn::token::{TokenFailure, VerifiedToken};

use super::owners::{Finding, Owners};
use super::routes::Route;
use super::token::{TokenRequirement, Unmet};
use super::{DecidedBy, RequestParts, Verdict};
use crate::config::OwnerPolicy;

/// Who is calling, as the connection established it.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// No credential: no certificate on an optional listener.
    Anonymous,
    /// A verified client certificate, and its owner (an index into the owners list).
    Certificate {
        identity: &'a ClientIdentity,
        owner: Option<usize>,
    },
    /// A legacy API key that checked out (on a route with `api_keys = true`).
    ApiKey(&'a KeyRecord),
}

impl<'a> Credential<'a> {
    /// The credential of a connection: its verified certificate, or none.
    pub fn of(identity: Option<&'a ClientIdentity>, owner: Option<usize>) -> Self {
        match identity {
            Some(identity) => Self::Certificate { identity, owner },
            None => Self::Anonymous,
        }
    }

    pub fn identity(&self) -> Option<&'a ClientIdentity> {
        match self {
            Self::Certificate { identity, .. } => Some(identity),
            Self::Anonymous | Self::ApiKey(_) => None,
        }
    }
}

/// Why a request is refused, once a route matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'r> {
    /// `;` parameters in the path on a route without `allow_path_params` (400).
    PathParams,
    /// A WebSocket upgrade on a route with `websocket = false` (400).
    UpgradeRefused,
    /// No certificate and the route needs one (401).
    Unauthenticated,
    /// The route's policy or the owner policy refuses the certificate (403).
    Forbidden,
    /// The route's token is missing, invalid, or lacks a scope or claim (401/403).
    Token {
        failure: TokenFailure,
        unmet: Option<Unmet<'r>>,
    },
}

/// What the route's token check found; `None` in [`Decision::token`] when it was not asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict<'r> {
    Accepted,
    Refused {
        failure: TokenFailure,
        unmet: Option<Unmet<'r>>,
    },
}

/// Everything decided about one request on its route.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'r> {
    pub route: &'r Route,
    /// Allow, Deny, Unauthenticated, or WouldDeny (an audit route forwards what it would have
    /// refused). `None` when the request was refused before policy (path parameters).
    pub verdict: Option<Verdict>,
    pub decided_by: DecidedBy,
    /// The owner policy's finding, when its policy is not allow.
    pub owner_finding: Option<Finding>,
    /// On an audit route: the first check that would have refused (`policy`, `owner`, `token`).
    pub would: Option<&'static str>,
    /// The shadow policy's verdict: true = it would allow.
    pub shadow: Option<bool>,
    /// The token check, when the route needs a token and the policy let the request get there.
    pub token: Option<TokenVerdict<'r>>,
    /// `None`: forward the request.
    pub refusal: Option<Refusal<'r>>,
}

/// Decides `req` from `credential` on `route`: path parameters, then the route's certificate
/// policy and the owner policy, the shadow policy, audit, the WebSocket switch, and last the
/// token — `token` is called (to verify the presented token for the requirement's issuer) only
/// when the route needs one and the request got that far.
pub fn decide<'r, 't>(
    req: &RequestParts<'_>,
    credential: &Credential<'_>,
    route: &'r Route,
    owners: &Owners,
    token: impl FnOnce(&'r TokenRequirement) -> Result<&'t VerifiedToken, TokenFailure>,
) -> Decision<'r> {
    let mut d = Decision {
        route,
        verdict: None,
        decided_by: DecidedBy::NoRoute,
        owner_finding: None,
        would: None,
        shadow: None,
        token: None,
        refusal: None,
    };
    if req.params && !route.allow_path_params {
        d.refusal = Some(Refusal::PathParams);
        return d;
    }
    let identity = credential.identity();
    let (mut verdict, decided_by) = match credential {
        Credential::ApiKey(key) if route.api_keys && key.allows(&route.name) => {
            (Verdict::Allow, DecidedBy::ApiKey)
        }
        Credential::ApiKey(_) => (Verdict::Deny, DecidedBy::ApiKeyRouteNotListed),
        _ => route.authorize(identity),
    };
    d.decided_by = decided_by;
    if let (Verdict::Allow, Credential::Certificate { identity, owner }) = (verdict, credential)
        && let Some((finding, policy)) = owners.judge(identity, *owner)
    {
        d.owner_finding = Some(finding);
        if policy == OwnerPolicy::Audit || route.audit {
            verdict = Verdict::WouldDeny;
            d.would = Some("owner");
        } else {
            verdict = Verdict::Deny;
            d.decided_by = DecidedBy::Governance(finding);
        }
    }
    d.shadow = route
        .shadow
        .as_ref()
        .map(|s| s.decide(identity, route.allow_unauthenticated));
    if route.audit && matches!(verdict, Verdict::Deny | Verdict::Unauthenticated) {
        verdict = Verdict::WouldDeny;
        d.would.get_or_insert("policy");
    }
    d.verdict = Some(verdict);
    d.refusal = match verdict {
        Verdict::Unauthenticated => Some(Refusal::Unauthenticated),
        Verdict::Deny => Some(Refusal::Forbidden),
        _ if req.upgrade && !route.websocket => Some(Refusal::UpgradeRefused),
        _ => None,
    };
    if d.refusal.is_some() {
        return d;
    }
    let Some(need) = &route.token else {
        return d;
    };
    let checked = match token(need).map(|t| need.check(t)) {
        Ok(Ok(())) => TokenVerdict::Accepted,
        Ok(Err(unmet)) => TokenVerdict::Refused {
            failure: unmet.failure(),
            unmet: Some(unmet),
        },
        Err(failure) => TokenVerdict::Refused {
            failure,
            unmet: None,
        },
    };
    d.token = Some(checked);
    if let TokenVerdict::Refused { failure, unmet } = checked {
        if route.audit {
            // Forwarded, and nothing about the token is vouched for upstream.
            d.verdict = Some(Verdict::WouldDeny);
            d.would.get_or_insert("token");
        } else {
            d.refusal = Some(Refusal::Token { failure, unmet });
        }
    }
    d
}
