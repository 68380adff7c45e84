//! Phase: the route's limits — its rate limit (this process's limiter, or Redis for a fleet,
//! with the fallback [`crate::limits::RateLimit::check_where_kept`] chooses) and its quota —
//! after authentication and authorisation, before anything goes upstream.

use http::HeaderValue;

use crate::authz::Route;
use crate::http::ConnContext;
use crate::http::error::RequestError;
use crate::http::record::Exchange;
use crate::limits::{Fleet, LimitKey, LimitKind, Outcome};
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
    // A certificate's SHA-256, or what an API key is counted under.
    let key_leaf = x
        .api_key
        .as_ref()
        .and_then(|k| k.record.as_ref())
        .map(|r| r.limit_id);
    let leaf = ctx
        .identity
        .as_deref()
        .map(|i| &i.sha256)
        .or(key_leaf.as_ref());
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
        let fleet = snapshot.limits.backend.as_deref().map(|backend| Fleet {
            backend,
            timeout: snapshot.limits.config.backend_timeout,
            on_error: snapshot.limits.config.on_backend_error,
        });
        let key = LimitKey::of(limit.spec.key, leaf, ip);
        let (outcome, failure) = limit
            .check_where_kept(&route.name, key, fleet.as_ref())
            .await;
        x.limit_backend_error = failure.map(|f| f.label());
        match outcome {
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
