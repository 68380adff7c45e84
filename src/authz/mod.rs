//! Routes and authorisation policy. Pure: the route table finds a request's route, and
//! [`decide`] makes the one decision — `(request parts, &Credential, route, token) -> Decision` —
//! that the request path enforces and `explain` prints. No I/O and no hyper or rustls types.

pub mod authority;
mod decide;
pub mod owners;
pub mod path;
mod routes;
mod rules;
mod shadow;
mod table;
pub mod token;

pub use decide::{Credential, Decision, Refusal, TokenVerdict, decide};
pub use routes::{Links, Route, RouteError};
pub use rules::Rule;
pub use shadow::Shadow;
pub use table::RouteTable;
pub use token::{CLAIM_CHALLENGE, TokenRequirement, Unmet};

use std::fmt;

use http::Method;

/// The parts of a request that routing and policy look at. `path` must be normalised.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    /// The canonical host ([`crate::authz::authority::RequestAuthority::host`]): lowercase, no port,
    /// no trailing dot.
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// The path carried `;` parameters (taken out of `path`, which only a route with
    /// `allow_path_params` accepts).
    pub params: bool,
    /// A WebSocket upgrade is asked for.
    pub upgrade: bool,
}

impl<'a> RequestParts<'a> {
    /// A request without path parameters or an upgrade.
    pub fn new(method: &'a Method, host: Option<&'a str>, path: &'a str) -> Self {
        Self {
            method,
            host,
            path,
            params: false,
            upgrade: false,
        }
    }
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
    /// The certificate's OCSP status (the result label: revoked, or unknown/error/invalid under
    /// `ocsp = "hard"`).
    Ocsp(&'static str),
    /// The owner policy (`[owners] unowned` / `lifetime_violation`).
    Governance(owners::Finding),
    /// A legacy API key whose record lists the route.
    ApiKey,
    /// A legacy API key whose record does not list the route.
    ApiKeyRouteNotListed,
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
            Self::Ocsp(result) => write!(f, "ocsp.{result}"),
            Self::Governance(finding) => write!(f, "owners.{}", finding.label()),
            Self::ApiKey => f.write_str("api_key"),
            Self::ApiKeyRouteNotListed => f.write_str("api_key.routes"),
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
    /// An audit route: the policy refuses the request, which is forwarded anyway.
    WouldDeny,
}

impl Verdict {
    /// The bounded `decision` label of `certgate_authz_decisions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
            Self::NoRoute => "no_route",
            Self::WouldDeny => "would_deny",
        }
    }
}

#[cfg(test)]
mod tests;
