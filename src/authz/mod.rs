//! Routes and authorisation policy. Pure: `(request parts, Option<&ClientIdentity>) -> Decision`,
//! no I/O and no hyper or rustls types.

pub mod authority;
pub mod path;

use std::fmt;
use std::time::Duration;

use http::Method;

use crate::authn::identity::ClientIdentity;
use crate::config::{RawMatcher, RawRoute};

/// The parts of a request that routing and policy look at. `path` must be normalised.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    /// The canonical host ([`crate::authz::authority::RequestAuthority::host`]): lowercase, no port,
    /// no trailing dot.
    pub host: Option<&'a str>,
    pub path: &'a str,
}

/// What decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    NoRoute,
    /// Index into the route's `deny` list.
    Deny(usize),
    /// Index into the route's `allow` list.
    Allow(usize),
    AllowUnauthenticated,
    NoAllowMatched,
    NoCertificate,
    /// The connection's certificate stopped verifying (revoked, untrusted or expired since the
    /// handshake).
    CertificateNoLongerValid,
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute => f.write_str("no route"),
            Self::Deny(i) => write!(f, "deny[{i}]"),
            Self::Allow(i) => write!(f, "allow[{i}]"),
            Self::AllowUnauthenticated => f.write_str("allow_unauthenticated"),
            Self::NoAllowMatched => f.write_str("no allow entry matched"),
            Self::NoCertificate => f.write_str("no client certificate"),
            Self::CertificateNoLongerValid => f.write_str("certificate no longer valid"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// A certificate was presented and the policy refuses it (403).
    Deny,
    /// No certificate and the route needs one (401).
    Unauthenticated,
    /// No route matches (404).
    NoRoute,
}

impl Verdict {
    /// The bounded `decision` label of `certgate_authz_decisions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
            Self::NoRoute => "no_route",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Decision<'r> {
    pub route: Option<&'r Route>,
    pub verdict: Verdict,
    pub decided_by: DecidedBy,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub index: usize,
    host: Option<String>,
    path_prefix: String,
    methods: Option<Vec<Method>>,
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
}

/// One allow/deny entry: all matchers must match.
#[derive(Debug)]
pub struct Rule {
    matchers: Vec<Matcher>,
    /// The entry as written, for `explain` and logs.
    pub text: String,
}

#[derive(Debug)]
enum Matcher {
    Uri(Pattern),
    Dns(Pattern),
    Email(String),
    Cn(String),
    O(String),
    Ou(String),
    IssuerCn(String),
    Sha256([u8; 32]),
    Any,
}

#[derive(Debug)]
enum Pattern {
    Exact(String),
    /// `spiffe://td/ns/*` → everything below `spiffe://td/ns/`.
    Below(String),
    /// `*.example.com` → exactly one label before `.example.com` (stored with the dot).
    OneLabel(String),
}

impl Pattern {
    fn parse(key: &str, v: &str) -> Result<Self, String> {
        if v.is_empty() {
            return Err(format!("{key}: must not be empty"));
        }
        let p = if key == "uri" {
            match v.strip_suffix('*') {
                Some(base) if base.ends_with('/') && base.len() > 1 => {
                    Pattern::Below(base.to_string())
                }
                Some(_) => return Err(format!("{key}: a wildcard must be a trailing \"/*\"")),
                None => Pattern::Exact(v.to_string()),
            }
        } else {
            match v.strip_prefix('*') {
                Some(rest) if rest.starts_with('.') && rest.len() > 1 => {
                    Pattern::OneLabel(rest.to_ascii_lowercase())
                }
                Some(_) => return Err(format!("{key}: a wildcard must be a leading \"*.\"")),
                None => Pattern::Exact(v.to_ascii_lowercase()),
            }
        };
        let inner = match &p {
            Pattern::Exact(s) | Pattern::Below(s) | Pattern::OneLabel(s) => s,
        };
        if inner.contains('*') {
            return Err(format!(
                "{key}: '*' is only allowed as \"/*\" (uri) or \"*.\" (dns)"
            ));
        }
        Ok(p)
    }

    fn matches(&self, value: &str, case_insensitive: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if case_insensitive {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            Pattern::Exact(s) => eq(value, s),
            Pattern::Below(base) => {
                value.len() > base.len()
                    && value.is_char_boundary(base.len())
                    && eq(&value[..base.len()], base)
            }
            Pattern::OneLabel(suffix) => {
                if value.len() <= suffix.len()
                    || !value.is_char_boundary(value.len() - suffix.len())
                {
                    return false;
                }
                let (label, rest) = value.split_at(value.len() - suffix.len());
                eq(rest, suffix) && !label.contains('.')
            }
        }
    }
}

impl Matcher {
    fn matches(&self, id: &ClientIdentity) -> bool {
        match self {
            Matcher::Uri(p) => id.uris.iter().any(|u| p.matches(u, false)),
            Matcher::Dns(p) => id.dns_names.iter().any(|d| p.matches(d, true)),
            Matcher::Email(e) => id.emails.iter().any(|x| email_eq(x, e)),
            Matcher::Cn(v) => id.common_names.iter().any(|x| x == v),
            Matcher::O(v) => id.organizations.iter().any(|x| x == v),
            Matcher::Ou(v) => id.organizational_units.iter().any(|x| x == v),
            Matcher::IssuerCn(v) => id.issuer_common_names.iter().any(|x| x == v),
            Matcher::Sha256(h) => &id.sha256 == h,
            Matcher::Any => true,
        }
    }
}

/// Local part exact, domain case-insensitive.
fn email_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

fn parse_sha256(v: &str) -> Result<[u8; 32], String> {
    let cleaned: String = v.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).map_err(|_| "sha256: not hex".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "sha256: must be 32 bytes (64 hex digits)".to_string())
}

impl Rule {
    /// Compiles one allow/deny entry. Errors say which key is wrong.
    pub fn compile(raw: &RawMatcher) -> Result<Self, String> {
        let mut m = Vec::new();
        let mut text = Vec::new();
        let mut string =
            |key: &str, v: &Option<String>, m: &mut Vec<Matcher>| -> Result<(), String> {
                let Some(v) = v else { return Ok(()) };
                text.push(format!("{key} = {v:?}"));
                if v.is_empty() {
                    return Err(format!("{key}: must not be empty"));
                }
                m.push(match key {
                    "uri" => Matcher::Uri(Pattern::parse(key, v)?),
                    "dns" => Matcher::Dns(Pattern::parse(key, v)?),
                    "email" => Matcher::Email(v.clone()),
                    "cn" => Matcher::Cn(v.clone()),
                    "o" => Matcher::O(v.clone()),
                    "ou" => Matcher::Ou(v.clone()),
                    "issuer_cn" => Matcher::IssuerCn(v.clone()),
                    "sha256" => Matcher::Sha256(parse_sha256(v)?),
                    _ => unreachable!("keys are fixed above"),
                });
                Ok(())
            };
        string("uri", &raw.uri, &mut m)?;
        string("dns", &raw.dns, &mut m)?;
        string("email", &raw.email, &mut m)?;
        string("cn", &raw.cn, &mut m)?;
        string("o", &raw.o, &mut m)?;
        string("ou", &raw.ou, &mut m)?;
        string("issuer_cn", &raw.issuer_cn, &mut m)?;
        string("sha256", &raw.sha256, &mut m)?;
        match raw.any {
            Some(true) => {
                text.push("any = true".to_string());
                m.push(Matcher::Any);
            }
            Some(false) => {
                return Err("any: only `any = true` is meaningful; remove the key instead".into());
            }
            None => {}
        }
        if m.is_empty() {
            return Err("empty entry: give at least one of uri, dns, email, cn, o, ou, issuer_cn, sha256, any".into());
        }
        Ok(Self {
            matchers: m,
            text: format!("{{ {} }}", text.join(", ")),
        })
    }

    pub fn matches(&self, id: &ClientIdentity) -> bool {
        self.matchers.iter().all(|m| m.matches(id))
    }
}

/// A route compile error: the key (relative to the route) and the problem.
#[derive(Debug)]
pub struct RouteError {
    pub key: String,
    pub problem: String,
}

impl Route {
    /// Compiles `routes[index]`. `upstream_index` maps an upstream name to its index.
    pub fn compile(
        index: usize,
        raw: &RawRoute,
        upstream_index: impl Fn(&str) -> Option<usize>,
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
                .map(|(i, r)| Rule::compile(r).map_err(|p| err(&format!("{key}[{i}]"), p)))
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
        })
    }

    fn matches_request(&self, req: &RequestParts<'_>) -> bool {
        if let Some(h) = &self.host {
            match req.host {
                // Both sides are canonical: lowercase, no port, no trailing dot.
                Some(rh) if rh == h => {}
                _ => return false,
            }
        }
        if let Some(methods) = &self.methods
            && !methods.contains(req.method)
        {
            return false;
        }
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

/// Routes in file order; the first match handles a request.
///
/// Lookup does not scan every route: routes are indexed by the first segment of their prefix,
/// so a request only checks the routes under its own first segment plus the catch-all (`/`)
/// routes, merged back into file order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// First prefix segment (e.g. `payments` for `/payments/v1`) → route indices, ascending.
    by_first_segment: std::collections::HashMap<String, Vec<usize>>,
    /// Routes whose prefix is `/`, ascending.
    catch_all: Vec<usize>,
}

/// `payments` for `/payments/1`, `` for `/`.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_first_segment: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        let mut catch_all = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if r.path_prefix == "/" {
                catch_all.push(i);
            } else {
                by_first_segment
                    .entry(first_segment(&r.path_prefix).to_string())
                    .or_default()
                    .push(i);
            }
        }
        Self {
            routes,
            by_first_segment,
            catch_all,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route, in file order, that matches host, path and method.
    pub fn find(&self, req: &RequestParts<'_>) -> Option<&Route> {
        let segment = self
            .by_first_segment
            .get(first_segment(req.path))
            .map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (segment.iter().peekable(), self.catch_all.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => return None,
            };
            if let Some(r) = next.and_then(|&i| self.routes.get(i))
                && r.matches_request(req)
            {
                return Some(r);
            }
        }
    }

    /// Routing plus policy for one request.
    pub fn decide(
        &self,
        req: &RequestParts<'_>,
        identity: Option<&ClientIdentity>,
    ) -> Decision<'_> {
        match self.find(req) {
            None => Decision {
                route: None,
                verdict: Verdict::NoRoute,
                decided_by: DecidedBy::NoRoute,
            },
            Some(route) => {
                let (verdict, decided_by) = route.authorize(identity);
                Decision {
                    route: Some(route),
                    verdict,
                    decided_by,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
