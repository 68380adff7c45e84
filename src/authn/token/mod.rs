//! Access tokens (RFC 9068 JWTs) bound to the client certificate (RFC 8705): the compiled
//! [`Issuer`] (`[token_issuers.NAME]`), its keys ([`jwks`]), signature and claim checks
//! ([`jwt`]), the certificate binding ([`binding`]), the verified-token cache ([`cache`]), and
//! JWKS fetched from URLs ([`remote`]).

pub mod binding;
pub mod cache;
pub mod check;
pub mod dpop;
pub mod jwks;
pub mod jwt;
pub mod remote;

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, Validation};

pub use jwks::KeySet;

/// Why a token was refused; also the `result` label of `certgate_token_validations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    Missing,
    Malformed,
    /// The token's `alg` is not in the issuer's `algorithms` (or not one its key makes): HS*
    /// and `none` never are.
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    UnknownKey,
    Unbound,
    BindingMismatch,
    InsufficientScope,
    ClaimMismatch,
}

impl TokenFailure {
    pub const ALL: [TokenFailure; 13] = [
        Self::Missing,
        Self::Malformed,
        Self::AlgorithmNotAllowed,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::UnknownKey,
        Self::Unbound,
        Self::BindingMismatch,
        Self::InsufficientScope,
        Self::ClaimMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey => "unknown_key",
            Self::Unbound => "unbound",
            Self::BindingMismatch => "binding_mismatch",
            Self::InsufficientScope => "insufficient_scope",
            Self::ClaimMismatch => "claim_mismatch",
        }
    }

    /// What the client is told (RFC 6750 §3.1): scope and claim failures are 403
    /// `insufficient_scope`, a missing token is a bare challenge, the rest `invalid_token`.
    pub fn is_forbidden(self) -> bool {
        matches!(self, Self::InsufficientScope | Self::ClaimMismatch)
    }
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The claims of a token whose signature, issuer, audience and type were verified, as the
/// request path needs them. Shared by every request that presents the same token.
#[derive(Debug, Default)]
pub struct VerifiedToken {
    /// The key set generation it was verified with.
    pub keys_generation: u64,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub jti: Option<String>,
    /// The granted scopes (`scope`, space-separated).
    pub scopes: Vec<String>,
    /// `cnf."x5t#S256"`, decoded: the SHA-256 of the certificate the token is bound to.
    pub bound_to: Option<[u8; 32]>,
    /// Every claim, for the routes' `claims` requirements.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The upstream headers, built once: `x-token-subject`, `x-token-client-id`,
    /// `x-token-scope`.
    pub headers: TokenHeaders,
    /// Where the token's client and signing key go in the register.
    pub sighting: Sighting,
}

/// A verified token's client and signing key as the register keys them (computed once per
/// token, not per request). The labels match `inventory::Kind`.
#[derive(Debug, Default, Clone)]
pub struct Sighting {
    /// The client (`client_id`, else `sub`) at the issuer, when the token names one.
    pub client: Option<[u8; 32]>,
    /// The signing key (`kid`) at the issuer.
    pub key: [u8; 32],
    pub kid: Option<String>,
    pub alg: String,
}

impl Sighting {
    pub fn new(issuer: &str, kid: Option<&str>, alg: Algorithm, client: Option<&str>) -> Self {
        use crate::util::digest::named_key;
        Self {
            client: client.map(|c| named_key("token_client", &[issuer, c])),
            key: named_key("token_key", &[issuer, kid.unwrap_or("")]),
            kid: kid.map(str::to_string),
            alg: format!("{alg:?}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct TokenHeaders {
    pub subject: Option<HeaderValue>,
    pub client_id: Option<HeaderValue>,
    pub scope: Option<HeaderValue>,
}

impl VerifiedToken {
    /// `exp`, `nbf` and `iat` against `now`, with `leeway` seconds of clock skew.
    pub fn check_time(&self, now: u64, leeway: u64) -> Result<(), TokenFailure> {
        if self.exp.saturating_add(leeway) < now {
            return Err(TokenFailure::Expired);
        }
        if self
            .nbf
            .into_iter()
            .chain(self.iat)
            .any(|t| t > now.saturating_add(leeway))
        {
            return Err(TokenFailure::NotYetValid);
        }
        Ok(())
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, read when the snapshot is built (hot-reloaded with the config).
    File(std::path::PathBuf),
    /// An `http(s)://` URL, fetched in the background ([`remote`]).
    Url(String),
}

/// One `[token_issuers.NAME]`, compiled.
pub struct Issuer {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Seconds.
    pub leeway: u64,
    pub require_binding: bool,
    pub source: JwksSource,
    /// The current keys: fixed for a file, replaced by the fetcher for a URL.
    pub keys: Arc<ArcSwap<KeySet>>,
    /// Set for a URL: asks for an early refetch when a token names an unknown key.
    pub remote: Option<Arc<remote::RemoteJwks>>,
    /// One prepared validation per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
    pub cache: cache::TokenCache,
    /// `certgate_token_validations_total{issuer=name,result}`: ok, then [`TokenFailure::ALL`].
    results: Vec<prometheus::IntCounter>,
}

/// What an issuer is compiled from, with its problems named by key.
pub struct IssuerSpec<'a> {
    pub name: &'a str,
    pub raw: &'a crate::config::RawTokenIssuer,
    /// `raw.algorithms`, parsed once by the caller ([`parse_algorithms`]).
    pub algorithms: Vec<Algorithm>,
    pub source: JwksSource,
    pub keys: Arc<ArcSwap<KeySet>>,
    pub remote: Option<Arc<remote::RemoteJwks>>,
    /// The `certgate_token_validations_total` counter of this issuer for a result label.
    pub counter: &'a dyn Fn(&str) -> prometheus::IntCounter,
}

/// Why an issuer's `algorithms` list is refused.
#[derive(Debug, thiserror::Error)]
pub enum AlgorithmError {
    #[error("must list at least one algorithm")]
    Empty,
    #[error("\"none\" would accept unsigned tokens")]
    None,
    #[error(
        "{0:?}: symmetric (HMAC) algorithms are refused: a shared secret is what certificate-bound tokens replace, and HS* with a public key is the classic algorithm-confusion attack"
    )]
    Symmetric(String),
    #[error(
        "{0:?} is not a supported algorithm (ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"
    )]
    Unsupported(String),
}

/// Turns the `algorithms` list into algorithms; `none` and HMAC are refused.
pub fn parse_algorithms(list: &[String]) -> Result<Vec<Algorithm>, AlgorithmError> {
    if list.is_empty() {
        return Err(AlgorithmError::Empty);
    }
    list.iter()
        .map(|a| {
            if a.eq_ignore_ascii_case("none") {
                return Err(AlgorithmError::None);
            }
            if a.to_ascii_uppercase().starts_with("HS") {
                return Err(AlgorithmError::Symmetric(a.clone()));
            }
            a.parse::<Algorithm>()
                .map_err(|_| AlgorithmError::Unsupported(a.clone()))
        })
        .collect()
}

impl Issuer {
    pub fn compile(spec: IssuerSpec<'_>) -> Result<Self, (&'static str, String)> {
        let raw = spec.raw;
        let algorithms = spec.algorithms;
        if raw.issuer.is_empty() {
            return Err(("issuer", "must not be empty".into()));
        }
        if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
            return Err((
                "audiences",
                "list at least one audience, none empty: a token for any audience is a token for every API".into(),
            ));
        }
        let leeway = raw.leeway.as_secs();
        let validations = algorithms
            .iter()
            .map(|&alg| (alg, jwt::validation(alg, raw, leeway)))
            .collect();
        let results = std::iter::once("ok")
            .chain(TokenFailure::ALL.iter().map(|f| f.label()))
            .map(|result| (spec.counter)(result))
            .collect();
        Ok(Self {
            name: spec.name.to_string(),
            issuer: raw.issuer.clone(),
            audiences: raw.audiences.clone(),
            algorithms,
            leeway,
            require_binding: raw.require_binding,
            source: spec.source,
            keys: spec.keys,
            remote: spec.remote,
            validations,
            cache: cache::TokenCache::default(),
            results,
        })
    }

    /// Counts one validation result.
    pub fn count(&self, result: Result<(), TokenFailure>) {
        let i = match result {
            Ok(()) => 0,
            Err(f) => 1 + TokenFailure::ALL.iter().position(|x| *x == f).unwrap_or(0),
        };
        if let Some(c) = self.results.get(i) {
            c.inc();
        }
    }

    pub(crate) fn validation_for(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}
