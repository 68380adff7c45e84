//! The OCSP gate of a request: the connection's certificate status, looked up once per
//! connection (and again only when the answer's time is up), applied to every request.

use tracing::warn;

use super::conn::ConnContext;
use super::error::{NoLongerValid, RequestError};
use crate::authn::revocation::ocsp::Outcome;
use crate::authz::DecidedBy;
use crate::config::OcspMode;
use crate::state::snapshot::Snapshot;
use crate::util::time::coarse_unix_now;

/// Lets the request through, or says why not: a revoked certificate gets 403; under
/// `ocsp = "hard"` so does an `unknown` one, and no usable answer gets 503.
pub(super) async fn check(
    ctx: &ConnContext,
    snapshot: &Snapshot,
) -> Result<(), (DecidedBy, RequestError)> {
    let (Some(policy), Some(id)) = (&snapshot.tls.ocsp, &ctx.identity) else {
        return Ok(());
    };
    let now = coarse_unix_now();
    let outcome = match ctx.ocsp_memo(now) {
        Some(o) => o,
        None => {
            let gateway = &ctx.gateway;
            // Boxed: the lookup (a fetch from the responder) is large and runs once per
            // connection, and unboxed it would size, and be copied with, every request's future.
            let l =
                Box::pin(policy.lookup(&gateway.registries.ocsp, &id.der, &ctx.intermediates, now))
                    .await;
            // An answer served from the cache counts as `cached`, whatever it says.
            let label = if l.cached {
                "cached"
            } else {
                l.outcome.label()
            };
            gateway.telemetry.metrics.ocsp_check(label).inc();
            if l.outcome == Outcome::Revoked {
                if let Some(entry) = &ctx.inventory {
                    entry.mark_revoked(now);
                }
                warn!(target: "certgate::tls", client_subject = %id.subject, client_serial = %id.serial, cached = l.cached, "client certificate revoked (OCSP)");
            } else if l.outcome != Outcome::Good && policy.mode == OcspMode::Soft {
                warn!(target: "certgate::tls", client_subject = %id.subject, client_serial = %id.serial, result = l.outcome.label(), "OCSP status not confirmed; allowed (ocsp = \"soft\")");
            }
            ctx.remember_ocsp(l.outcome, l.until);
            l.outcome
        }
    };
    if outcome.allows(policy.mode) {
        return Ok(());
    }
    let by = DecidedBy::Ocsp(outcome.label());
    Err(match outcome {
        Outcome::Revoked => (
            by,
            RequestError::CertificateNoLongerValid(NoLongerValid::OcspRevoked),
        ),
        Outcome::Unknown => (
            by,
            RequestError::CertificateNoLongerValid(NoLongerValid::OcspUnknown),
        ),
        _ => (by, RequestError::RevocationUnavailable),
    })
}
