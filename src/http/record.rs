//! The record of one exchange — metrics, inventory and one access-log line — written exactly
//! once, when the response body ends or is dropped, by the body that carries the answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Method, Request, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::authn::token::{TokenFailure, VerifiedToken};
use crate::authz::owners::{Finding, UNOWNED};
use crate::authz::{DecidedBy, Verdict};
use crate::http::conn::ConnContext;
use crate::http::error::{RequestError, Side};
use crate::http::headers::{client_request_id, request_id};
use crate::limits::LimitKind;
use crate::limits::quota::Charge;
use crate::state::snapshot::{RouteObs, Snapshot};
use crate::telemetry::anomaly::{self, Watched};
use crate::upstream::body::BodyMeter;
use crate::util::text::{LOG_FIELD_MAX, bounded};
use crate::util::time::coarse_unix_now;

/// Paths are logged up to this many bytes (a path can be as long as the request head).
const PATH_LOG_MAX: usize = 2048;

/// One request/response exchange as it will be recorded: metrics, inventory, access log.
pub struct Exchange {
    pub(super) ctx: Arc<ConnContext>,
    /// Keeps the connection counted as busy until the exchange ends.
    _active: super::conn::ActiveRequest,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) start: Instant,
    pub(super) request_id: HeaderValue,
    /// The client's own `x-request-id`, when it sent a well-formed one.
    client_request_id: Option<HeaderValue>,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) user_agent: Option<HeaderValue>,
    /// The canonical authority, once validated.
    pub(super) host: Option<HeaderValue>,
    /// The normalised path when it differs from `uri.path()`.
    pub(super) normalized: Option<String>,
    pub(super) route: Option<usize>,
    pub(super) verdict: Option<Verdict>,
    pub(super) decided_by: Option<DecidedBy>,
    pub(super) upstream: Option<usize>,
    pub(super) upstream_latency: Option<Duration>,
    pub(super) status: StatusCode,
    /// Boxed: only failed requests carry one, and the record moves with every response.
    pub(super) error: Option<Box<RequestError>>,
    pub(super) bytes_in: Option<Arc<BodyMeter>>,
    pub(super) bytes_out: u64,
    /// The access token's check, on routes that need one.
    pub(super) token: Option<TokenRecord>,
    /// The scope or claim a verified token lacked (`scope X` / `claim Y`): logged, never sent.
    pub(super) token_unmet: Option<String>,
    /// The legacy API key presented, by id and result (never the key).
    pub(super) api_key: Option<super::apikey::KeyUse>,
    /// The limit that refused the request, and whether only in audit (forwarded anyway).
    pub(super) limited: Option<(LimitKind, bool)>,
    /// On an audit route: what would have refused the request (`policy`, `token`, `rate`,
    /// `quota`), the first such check.
    pub(super) would: Option<&'static str>,
    /// The route's shadow policy: true = it would allow.
    pub(super) shadow: Option<bool>,
    /// What the request drew from the route's quota: the response's bytes are added to it.
    pub(super) quota_charge: Option<Charge>,
    /// What the rate limit would still let through at once, when it let this one through.
    pub(super) limit_remaining: Option<u32>,
    /// Why the fleet-wide limit could not be asked (`on_backend_error` answered instead).
    pub(super) limit_backend_error: Option<&'static str>,
    /// The certificate's owner: an index into the snapshot's owners.
    pub(super) owner: Option<usize>,
    /// What the owner policy found (unowned, lifetime violation), when its policy is not allow.
    pub(super) owner_finding: Option<Finding>,
}

/// What the log says about a request's access token: never the token, only its issuer, the
/// result, and the `sub`, `client_id` and `jti` of a token whose signature verified.
pub(super) struct TokenRecord {
    /// Index into the snapshot's token issuers.
    pub(super) issuer: usize,
    result: Option<TokenFailure>,
    pub(super) verified: Option<Arc<VerifiedToken>>,
    /// The connection had not presented this token before: its principals go to the inventory.
    pub(super) fresh: bool,
}

impl TokenRecord {
    pub(super) fn verified(issuer: usize, token: Arc<VerifiedToken>, fresh: bool) -> Self {
        Self {
            issuer,
            result: None,
            verified: Some(token),
            fresh,
        }
    }

    pub(super) fn refused(
        issuer: usize,
        failure: TokenFailure,
        token: Option<Arc<VerifiedToken>>,
    ) -> Self {
        Self {
            issuer,
            result: Some(failure),
            verified: token,
            fresh: true,
        }
    }

    fn result(&self) -> &'static str {
        self.result.map_or("ok", TokenFailure::label)
    }

    fn claim(&self, f: impl Fn(&VerifiedToken) -> Option<&String>) -> Option<String> {
        self.verified
            .as_deref()
            .and_then(f)
            .map(|s| bounded(s, LOG_FIELD_MAX).into_owned())
    }
}

impl Exchange {
    pub(super) fn new(
        ctx: &Arc<ConnContext>,
        snapshot: Arc<Snapshot>,
        req: &Request<Incoming>,
    ) -> Self {
        Self {
            ctx: ctx.clone(),
            _active: ctx.begin_request(),
            snapshot,
            start: Instant::now(),
            request_id: request_id(),
            client_request_id: client_request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
            host: None,
            normalized: None,
            route: None,
            verdict: None,
            decided_by: None,
            upstream: None,
            upstream_latency: None,
            status: StatusCode::OK,
            error: None,
            bytes_in: None,
            bytes_out: 0,
            token: None,
            token_unmet: None,
            api_key: None,
            limited: None,
            would: None,
            shadow: None,
            quota_charge: None,
            limit_remaining: None,
            limit_backend_error: None,
            owner: None,
            owner_finding: None,
        }
    }

    /// The access log's `decision`: the verdict, or `would_limit` for a request an audit route
    /// let through over its limit.
    fn decision(&self) -> Option<&'static str> {
        match (self.verdict, self.limited) {
            (Some(Verdict::Allow), Some((_, true))) => Some("would_limit"),
            (v, _) => v.map(Verdict::label),
        }
    }

    fn path(&self) -> &str {
        self.normalized.as_deref().unwrap_or(self.uri.path())
    }

    /// Metrics, inventory and one access-log event. Runs once per request.
    pub(super) fn finish(self) {
        self.ctx.bytes_read_at_response.store(
            self.ctx.bytes_read.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let route_obs = self
            .route
            .and_then(|i| self.snapshot.routing.route_obs.get(i));
        let elapsed = self.start.elapsed();
        let bytes_in = self.bytes_in.as_ref().map_or(0, |m| m.bytes());
        self.count(route_obs, elapsed, bytes_in);
        let owner = self.owner_name();
        self.observe_anomaly(route_obs, owner);
        self.log(elapsed, bytes_in, owner);
    }

    /// Metrics, the inventory entry, the quota's bytes.
    fn count(&self, route_obs: Option<&RouteObs>, elapsed: Duration, bytes_in: u64) {
        let telemetry = &self.ctx.gateway.telemetry;
        let metrics = route_obs.map_or(&telemetry.metrics.unrouted, |r| &r.metrics);
        if let Some(v) = self.verdict {
            metrics.decision(v);
            if let Some(entry) = &self.ctx.inventory {
                entry.record(route_obs.map(|r| r.inventory_id), v, coarse_unix_now());
                if let Some(t) = self
                    .token
                    .as_ref()
                    .filter(|t| t.fresh)
                    .and_then(|t| t.verified.as_deref())
                {
                    entry.note_token(t.sub.as_deref(), t.client_id.as_deref());
                }
            }
        }
        metrics.finished(&self.method, self.status, elapsed, bytes_in, self.bytes_out);
        if let Some((kind, audit)) = self.limited {
            metrics.rate_limited(kind, audit);
        }
        if let Some(allow) = self.shadow {
            metrics.shadow_decision(allow);
        }
        if let Some(c) = &self.quota_charge {
            c.cell.add_bytes(c.window, self.bytes_out);
        }
        if let Some(k) = &self.api_key {
            telemetry.metrics.api_key_request(k.result);
        }
        if let Some(v) = self.verdict {
            self.register_use(route_obs.map(|r| r.inventory_id), v);
        }
    }

    fn route_name(&self) -> Option<&str> {
        self.route
            .and_then(|i| self.snapshot.routing.routes.routes().get(i))
            .map(|r| r.name.as_str())
    }

    /// The certificate's owner, `unowned` for a certificate no owner matches.
    fn owner_name(&self) -> Option<&str> {
        let owners = &self.snapshot.identity.owners;
        match self.owner.and_then(|i| owners.list.get(i)) {
            Some(o) => Some(&*o.name),
            None => (self.ctx.identity.is_some() && owners.configured).then_some(UNOWNED),
        }
    }

    fn observe_anomaly(&self, route_obs: Option<&RouteObs>, owner: Option<&str>) {
        let Some(spec) = &self.snapshot.telemetry.anomaly else {
            return;
        };
        let id = self.ctx.identity.as_deref();
        // An authenticated key is a credential of its own; failed keys count for the address.
        let key = self.api_key.as_ref().and_then(|k| k.record.as_deref());
        let (who, identity) = match (id, key) {
            (Some(i), _) => (
                Watched::Certificate(i.sha256),
                Some((i.sha256_hex.as_str(), i.subject.as_str())),
            ),
            (None, Some(k)) => (
                Watched::ApiKey(k.limit_id),
                Some((k.label.as_str(), k.id.as_str())),
            ),
            (None, None) => (Watched::SourceIp(self.ctx.peer.ip()), None),
        };
        self.ctx.gateway.telemetry.anomalies.observe(
            spec,
            &anomaly::Request {
                who,
                identity,
                owner: owner.or(key.map(|k| &*k.owner)),
                source: self.ctx.peer.ip(),
                route: self
                    .route_name()
                    .zip(route_obs)
                    .map(|(name, o)| (o.inventory_id, name)),
                refused: matches!(self.status.as_u16(), 401 | 403 | 429),
            },
        );
    }

    /// The access-log line, and a line of its own at its level for a failure an operator must
    /// look at.
    fn log(&self, elapsed: Duration, bytes_in: u64, owner: Option<&str>) {
        let snapshot = &self.snapshot;
        let route = self.route_name();
        let id = self.ctx.identity.as_deref();
        let upstream = self
            .upstream
            .and_then(|i| snapshot.routing.upstreams.get(i))
            .map(|u| u.name.as_str());
        let token = self.token.as_ref();
        let side = self.error.as_deref().map(RequestError::side);
        tracing::info!(
            target: "certgate::access",
            request_id = self.request_id.to_str().unwrap_or(""),
            client_request_id = self.client_request_id.as_ref().and_then(|v| v.to_str().ok()),
            client = %self.ctx.peer,
            client_sha256 = id.map(|i| i.sha256_hex.as_str()),
            client_subject = id.map(|i| bounded(&i.subject, LOG_FIELD_MAX)).as_deref(),
            client_uri = id.map(|i| Joined(&i.uris)).map(tracing::field::display),
            client_dns = id.map(|i| Joined(&i.dns_names)).map(tracing::field::display),
            client_issuer = id.map(|i| bounded(&i.issuer, LOG_FIELD_MAX)).as_deref(),
            client_serial = id.map(|i| i.serial.as_str()),
            client_owner = owner,
            owner_finding = self.owner_finding.map(Finding::label),
            method = self.method.as_str(),
            host = self.host.as_ref().and_then(|h| h.to_str().ok()),
            user_agent = self.user_agent.as_ref().and_then(|h| h.to_str().ok()).map(|u| bounded(u, LOG_FIELD_MAX)).as_deref(),
            protocol = protocol_label(self.version),
            path = &*bounded(self.path(), PATH_LOG_MAX),
            route,
            decision = self.decision(),
            rule = self.decided_by.map(tracing::field::display),
            status = self.status.as_u16(),
            upstream,
            upstream_latency_us = self.upstream_latency.map(|d| d.as_micros() as u64),
            duration_us = elapsed.as_micros() as u64,
            bytes_in,
            bytes_out = self.bytes_out,
            error = self.error.as_ref().map(tracing::field::display),
            error_side = side.map(Side::label),
            token_issuer = token
                .and_then(|t| snapshot.identity.token_issuers.get(t.issuer))
                .map(|i| i.name.as_str()),
            token_result = token.map(TokenRecord::result),
            token_unmet = self.token_unmet.as_deref(),
            api_key_id = self
                .api_key
                .as_ref()
                .and_then(|k| k.record.as_deref())
                .map(|r| r.id.as_str()),
            api_key_result = self.api_key.as_ref().map(|k| k.result),
            token_sub = token.and_then(|t| t.claim(|v| v.sub.as_ref())),
            token_client_id = token.and_then(|t| t.claim(|v| v.client_id.as_ref())),
            token_jti = token.and_then(|t| t.claim(|v| v.jti.as_ref())),
            limit = self.limited.map(|(k, _)| k.label()),
            would = self.would,
            shadow_decision = self.shadow.map(|a| if a { "allow" } else { "deny" }),
            limit_remaining = self.limit_remaining,
            limit_backend_error = self.limit_backend_error,
            "request"
        );
        // Failures an operator must look at also get a line of their own at their level.
        match (side, &self.error) {
            (Some(Side::Upstream), Some(e)) => tracing::warn!(
                request_id = self.request_id.to_str().unwrap_or(""),
                route,
                upstream,
                error = %e,
                "upstream failure"
            ),
            (Some(Side::Gateway), Some(e)) => tracing::error!(
                request_id = self.request_id.to_str().unwrap_or(""),
                route,
                error = %e,
                "gateway failure"
            ),
            _ => {}
        }
    }
}
/// SANs joined with `,` for the log, written straight into the log line (no allocation) and
/// cut at [`LOG_FIELD_MAX`] bytes.
struct Joined<'a>(&'a [String]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut written = 0;
        for (i, s) in self.0.iter().enumerate() {
            let sep = usize::from(i > 0);
            if written + sep + s.len() > LOG_FIELD_MAX {
                return write!(
                    f,
                    "{}…({} more)",
                    if i > 0 { "," } else { "" },
                    self.0.len() - i
                );
            }
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s)?;
            written += sep + s.len();
        }
        Ok(())
    }
}

fn protocol_label(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}
