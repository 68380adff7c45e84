//! Routes compiled from `[[routes]]`: what each matches and allows ([`super::table`] finds the
//! first one matching a request).

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
use crate::limits::{RateLimit, RateLimitSpec};
use std::sync::Arc;

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
    /// The access token the route needs, if any.
    pub token: Option<TokenRequirement>,
    /// `rate_limit`, validated; [`Route::rate_limit`] is its live limiter.
    pub rate_limit_spec: Option<RateLimitSpec>,
    /// Attached from the limit registry when the snapshot is built.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// `quota`, validated; [`Route::quota`] is its live counters.
    pub quota_spec: Option<QuotaSpec>,
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

impl Route {
    /// Compiles `routes[index]`. `upstream_index` and `issuer_index` map an upstream or a
    /// token issuer name to its index.
    pub fn compile(
        index: usize,
        raw: &RawRoute,
        upstream_index: impl Fn(&str) -> Option<usize>,
        issuer_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, RouteError> {
        let err = |key: &str, problem: String| RouteError {
            key: key.to_string(),
            problem,
        };
        if raw.name.is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        let prefix = &raw.path_prefix;
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
        let methods = match &raw.methods {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(err(
                    "methods",
                    "empty list matches nothing; omit the key to allow any method".into(),
                ));
            }
            Some(list) => Some(
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
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let host = match &raw.host {
            Some(h) => match crate::authz::authority::RequestAuthority::parse(h.as_bytes()) {
                Ok(a) if a.host().len() == a.header_value().len() => Some(a.host().to_string()),
                Ok(_) => {
                    return Err(err(
                        "host",
                        format!("{h:?}: give the host name without a port"),
                    ));
                }
                Err(e) => return Err(err("host", format!("{h:?} is not a host name ({e})"))),
            },
            None => None,
        };
        let upstream = upstream_index(&raw.upstream).ok_or_else(|| {
            err(
                "upstream",
                format!("no [upstreams.{}] is defined", raw.upstream),
            )
        })?;
        let compile_list = |key: &str, list: &[RawMatcher]| {
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    if key.ends_with("deny") {
                        Rule::compile_deny(r)
                    } else {
                        Rule::compile(r)
                    }
                    .map_err(|p| err(&format!("{key}[{i}]"), p))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Route {
            name: raw.name.clone(),
            index,
            host,
            path_prefix: prefix.clone(),
            methods,
            upstream,
            allow: compile_list("allow", &raw.allow)?,
            deny: compile_list("deny", &raw.deny)?,
            allow_unauthenticated: raw.allow_unauthenticated,
            timeout: raw.timeout,
            max_request_body: raw.max_request_body.as_u64(),
            allow_path_params: raw.allow_path_params,
            websocket: raw.websocket,
            token: raw
                .token
                .as_ref()
                .map(|t| TokenRequirement::compile(t, issuer_index))
                .transpose()
                .map_err(|(k, p)| err(k, p))?,
            rate_limit_spec: raw
                .rate_limit
                .as_ref()
                .map(RateLimitSpec::compile)
                .transpose()
                .map_err(|(k, p)| err(k, p))?,
            rate_limit: None,
            quota_spec: raw
                .quota
                .as_ref()
                .map(QuotaSpec::compile)
                .transpose()
                .map_err(|(k, p)| err(k, p))?,
            quota: None,
            audit: raw.enforcement == crate::config::Enforcement::Audit,
            shadow: match &raw.shadow {
                None => None,
                Some(s) => Some(Shadow {
                    allow: compile_list("shadow.allow", &s.allow)?,
                    deny: compile_list("shadow.deny", &s.deny)?,
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
