//! Phase: the route's limits — its rate limit (this process's limiter, or Redis for a fleet)
//! and its quota — after authentication and authorisation, before anything goes upstream.

use http::HeaderValue;

use crate::authz::Route;
use crate::config::OnBackendError;
use crate::http::ConnContext;
use crate::http::error::RequestError;
use crate::http::record::Exchange;
use crate::limits::{LimitKey, LimitKind, Outcome, RateLimit};
use crate::state::snapshot::Snapshot;

/// Phase: the route's rate limit, then its quota, after authentication and authorisation,
/// before anything goes upstream. On an audit route a refusal is recorded and the request goes
/// on.
pub(super) async fn check_limits(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    route: &Route,
    x: &mut Exchange,
) -> Result<(), RequestError> {
    let leaf = ctx.identity.as_deref().map(|i| &i.sha256);
    let ip = ctx.peer.ip();
    let refused = |x: &mut Exchange, kind: LimitKind, retry_after, policy: &HeaderValue| {
        x.limited = Some((kind, route.audit));
        if route.audit {
            x.would.get_or_insert(kind.label());
            return Ok(());
        }
        Err(RequestError::RateLimited {
            kind,
            retry_after,
            policy: policy.clone(),
        })
    };
    if let Some(limit) = &route.rate_limit {
        match rate_outcome(
            snapshot,
            route,
            limit,
            LimitKey::of(limit.spec.key, leaf, ip),
            x,
        )
        .await
        {
            Some(Outcome::Allowed { remaining }) => x.limit_remaining = Some(remaining),
            None => {}
            Some(Outcome::Limited { retry_after }) => {
                refused(x, LimitKind::Rate, retry_after, &limit.policy_header)?;
            }
        }
    }
    if let Some(quota) = &route.quota {
        let now_ms = crate::util::time::unix_now_ms();
        match quota.check(&LimitKey::of(quota.spec.key, leaf, ip), now_ms) {
            (Outcome::Allowed { remaining }, charge) => {
                x.limit_remaining = Some(x.limit_remaining.map_or(remaining, |r| r.min(remaining)));
                x.quota_charge = charge;
            }
            (Outcome::Limited { retry_after }, _) => {
                refused(x, LimitKind::Quota, retry_after, &quota.policy_header)?;
            }
        }
    }
    Ok(())
}

/// The rate limit's answer: from this process's limiter, or from Redis for a fleet-wide limit.
/// When Redis fails (or is known to be down), `on_backend_error` answers: this process's
/// limiter (`local`), let through without a count (`allow`, `None`), or refused for a second
/// (`deny`).
async fn rate_outcome(
    snapshot: &Snapshot,
    route: &Route,
    limit: &RateLimit,
    key: LimitKey,
    x: &mut Exchange,
) -> Option<Outcome> {
    let Some(redis) = &snapshot.limit_backend else {
        return Some(limit.check(&key));
    };
    let timeout = snapshot.limits.backend_timeout;
    match redis.check(&route.name, &limit.spec, &key, timeout).await {
        Ok(outcome) => Some(outcome),
        Err(failure) => {
            x.limit_backend_error = Some(failure.label());
            match snapshot.limits.on_backend_error {
                OnBackendError::Local => Some(limit.check(&key)),
                OnBackendError::Allow => None,
                OnBackendError::Deny => Some(Outcome::Limited {
                    retry_after: std::time::Duration::from_secs(1),
                }),
            }
        }
    }
}
