//! Routes compiled from `[[routes]]`: what each matches and allows ([`super::table`] finds the
//! first one matching a request).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::authn::identity::ClientIdentity;
use crate::config::{RawMatcher, RawRoute};

use super::path;
use super::rules::Rule;
use super::shadow::Shadow;
use super::token::TokenRequirement;
use super::{DecidedBy, RequestParts, Verdict};
use crate::limits::quota::{Quota, QuotaSpec};
use crate::limits::registry::LimitRegistry;
use crate::limits::{RateLimit, RateLimitSpec};

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub index: usize,
    pub(super) host: Option<String>,
    pub(super) path_prefix: String,
    pub(super) methods: Option<Vec<Method>>,
    /// Index into the snapshot's upstream list.
    pub upstream: usize,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub allow_unauthenticated: bool,
    pub timeout: Option<Duration>,
    /// Largest request body forwarded, in bytes.
    pub max_request_body: u64,
    /// `;` parameters in path segments are accepted (and ignored for matching).
    pub allow_path_params: bool,
    /// WebSocket upgrades are proxied; false: refused.
    pub websocket: bool,
    /// Legacy API keys are accepted from clients without a certificate.
    pub api_keys: bool,
    /// The access token the route needs, if any.
    pub token: Option<TokenRequirement>,
    /// `rate_limit`: its live limiter (the spec is [`RateLimit::spec`]).
    pub rate_limit: Option<Arc<RateLimit>>,
    /// `quota`: its live counters (the spec is [`Quota::spec`]).
    pub quota: Option<Arc<Quota>>,
    /// `enforcement = "audit"`: refusals are logged and counted, the request forwarded.
    pub audit: bool,
    /// A candidate policy, evaluated and recorded only.
    pub shadow: Option<Shadow>,
}

/// A route compile error: the key (relative to the route) and the problem.
#[derive(Debug)]
pub struct RouteError {
    pub key: String,
    pub problem: String,
}

/// `path_prefix`: normalised, without a trailing `/`.
fn compile_prefix(prefix: &str) -> Result<String, RouteError> {
    match path::normalize(prefix) {
        Ok(n) if n == *prefix => {}
        Ok(n) => {
            return Err(err(
                "path_prefix",
                format!("must be normalised; did you mean {n:?}?"),
            ));
        }
        Err(e) => return Err(err("path_prefix", e.to_string())),
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(err(
            "path_prefix",
            format!(
                "drop the trailing '/': prefixes match whole segments, so {:?} already covers {prefix:?}",
                prefix.trim_end_matches('/')
            ),
        ));
    }
    Ok(prefix.to_string())
}

/// `methods`: upper-case method names; none given matches every method.
fn compile_methods(list: Option<&[String]>) -> Result<Option<Vec<Method>>, RouteError> {
    let Some(list) = list else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(err(
            "methods",
            "empty list matches nothing; omit the key to allow any method",
        ));
    }
    list.iter()
        .map(|m| {
            let up = m.to_ascii_uppercase();
            if up != *m {
                return Err(err(
                    "methods",
                    format!("{m:?}: methods are case-sensitive, write {up:?}"),
                ));
            }
            Method::from_bytes(m.as_bytes())
                .map_err(|_| err("methods", format!("{m:?} is not a valid method")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `host`: a host name without a port, kept canonical (lowercase, no trailing dot).
fn compile_host(host: Option<&str>) -> Result<Option<String>, RouteError> {
    let Some(h) = host else {
        return Ok(None);
    };
    match crate::authz::authority::RequestAuthority::parse(h.as_bytes()) {
        Ok(a) if a.host().len() == a.header_value().len() => Ok(Some(a.host().to_string())),
        Ok(_) => Err(err(
            "host",
            format!("{h:?}: give the host name without a port"),
        )),
        Err(e) => Err(err("host", format!("{h:?} is not a host name ({e})"))),
    }
}

/// An `allow` or `deny` list (`key` names it; a deny list refuses `any`).
fn compile_rules(key: &str, list: &[RawMatcher]) -> Result<Vec<Rule>, RouteError> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            if key.ends_with("deny") {
                Rule::compile_deny(r)
            } else {
                Rule::compile(r)
            }
            .map_err(|p| err(&format!("{key}[{i}]"), p.to_string()))
        })
        .collect()
}

/// What a route names outside itself, resolved while it compiles.
pub struct Links<'a> {
    /// Upstream name → index among the snapshot's upstreams.
    pub upstreams: &'a HashMap<String, usize>,
    /// Token issuer name → index among the snapshot's issuers.
    pub issuers: &'a HashMap<String, usize>,
    /// Where the route's rate limiter and quota live across reloads (the same counters while
    /// the route's limit is unchanged).
    pub limits: &'a LimitRegistry,
}

fn err(key: &str, problem: impl Into<String>) -> RouteError {
    RouteError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// `(key, problem)` from a part's own compile, relative to the route.
fn keyed((key, problem): (&str, String)) -> RouteError {
    err(key, problem)
}

impl Route {
    /// Compiles `routes[index]`, with its upstream, token issuer and limiters resolved through
    /// `links`.
    pub fn compile(index: usize, raw: &RawRoute, links: &Links<'_>) -> Result<Self, RouteError> {
        if raw.name.is_empty() {
            return Err(err("name", "must not be empty"));
        }
        let path_prefix = compile_prefix(&raw.path_prefix)?;
        let methods = compile_methods(raw.methods.as_deref())?;
        let host = compile_host(raw.host.as_deref())?;
        let upstream = links.upstreams.get(&raw.upstream).copied().ok_or_else(|| {
            err(
                "upstream",
                format!("no [upstreams.{}] is defined", raw.upstream),
            )
        })?;
        let issuer_index = |n: &str| links.issuers.get(n).copied();
        let rate_limit = raw.rate_limit.as_ref().map(RateLimitSpec::compile);
        let quota = raw.quota.as_ref().map(QuotaSpec::compile);
        Ok(Route {
            name: raw.name.clone(),
            index,
            host,
            path_prefix,
            methods,
            upstream,
            allow: compile_rules("allow", &raw.allow)?,
            deny: compile_rules("deny", &raw.deny)?,
            allow_unauthenticated: raw.allow_unauthenticated,
            timeout: raw.timeout,
            max_request_body: raw.max_request_body.as_u64(),
            allow_path_params: raw.allow_path_params,
            websocket: raw.websocket,
            api_keys: raw.api_keys,
            token: raw
                .token
                .as_ref()
                .map(|t| TokenRequirement::compile(t, issuer_index))
                .transpose()
                .map_err(keyed)?,
            rate_limit: rate_limit
                .transpose()
                .map_err(keyed)?
                .map(|spec| links.limits.resolve(&raw.name, spec)),
            quota: quota
                .transpose()
                .map_err(keyed)?
                .map(|spec| links.limits.resolve_quota(&raw.name, spec)),
            audit: raw.enforcement == crate::config::Enforcement::Audit,
            shadow: match &raw.shadow {
                None => None,
                Some(s) => Some(Shadow {
                    allow: compile_rules("shadow.allow", &s.allow)?,
                    deny: compile_rules("shadow.deny", &s.deny)?,
                }),
            },
        })
    }

    pub(super) fn matches_request(&self, req: &RequestParts<'_>) -> bool {
        self.host_matches(req) && self.method_matches(req) && self.path_matches(req)
    }

    pub(super) fn host_matches(&self, req: &RequestParts<'_>) -> bool {
        // Both sides are canonical: lowercase, no port, no trailing dot.
        self.host.as_deref().is_none_or(|h| req.host == Some(h))
    }

    pub(super) fn method_matches(&self, req: &RequestParts<'_>) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(req.method))
    }

    pub(super) fn path_matches(&self, req: &RequestParts<'_>) -> bool {
        path::has_prefix(req.path, &self.path_prefix)
    }

    /// The policy decision for this route.
    pub fn authorize(&self, identity: Option<&ClientIdentity>) -> (Verdict, DecidedBy) {
        let Some(id) = identity else {
            return if self.allow_unauthenticated {
                (Verdict::Allow, DecidedBy::AllowUnauthenticated)
            } else {
                (Verdict::Unauthenticated, DecidedBy::NoCertificate)
            };
        };
        if let Some(i) = self.deny.iter().position(|r| r.matches(id)) {
            return (Verdict::Deny, DecidedBy::Deny(i));
        }
        if let Some(i) = self.allow.iter().position(|r| r.matches(id)) {
            return (Verdict::Allow, DecidedBy::Allow(i));
        }
        if self.allow_unauthenticated {
            // A verified client is never worse off than an anonymous one.
            return (Verdict::Allow, DecidedBy::AllowUnauthenticated);
        }
        (Verdict::Deny, DecidedBy::NoAllowMatched)
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// True when every request this route could match is matched by `earlier` first.
    pub fn is_shadowed_by(&self, earlier: &Route) -> bool {
        let host_covered = match (&earlier.host, &self.host) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let methods_covered = match (&earlier.methods, &self.methods) {
            (None, _) => true,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
            (Some(_), None) => false,
        };
        host_covered && methods_covered && path::has_prefix(&self.path_prefix, &earlier.path_prefix)
    }
}
