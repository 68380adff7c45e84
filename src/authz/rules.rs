//! Allow/deny entries compiled once into typed matchers over a [`ClientIdentity`].

use crate::authn::identity::ClientIdentity;
use crate::config::RawMatcher;

/// One allow/deny entry: all matchers must match.
#[derive(Debug)]
pub struct Rule {
    matchers: Vec<Matcher>,
    /// A deny entry: an ambiguous certificate (two CNs) matches when any value would, so it
    /// cannot slip past a deny; an allow entry needs every value to match.
    refusing: bool,
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
    fn parse(key: &'static str, v: &str) -> Result<Self, MatcherError> {
        let err = |problem: String| MatcherError::at(key, problem);
        if v.is_empty() {
            return Err(err("must not be empty".into()));
        }
        let p = if key == "uri" {
            if v.starts_with("spiffe://") {
                let id = v.strip_suffix('*').unwrap_or(v);
                spiffe_id(id.strip_suffix('/').unwrap_or(id))
                    .map_err(|e| err(format!("{v:?} is not a SPIFFE ID: {e}")))?;
            }
            match v.strip_suffix('*') {
                Some(base) if base.ends_with('/') && base.len() > 1 => {
                    Pattern::Below(base.to_string())
                }
                Some(_) => return Err(err("a wildcard must be a trailing \"/*\"".into())),
                None => Pattern::Exact(v.to_string()),
            }
        } else {
            match v.strip_prefix('*') {
                Some(rest) if rest.starts_with('.') && rest.len() > 1 => {
                    Pattern::OneLabel(rest.to_ascii_lowercase())
                }
                Some(_) => return Err(err("a wildcard must be a leading \"*.\"".into())),
                None => Pattern::Exact(v.to_ascii_lowercase()),
            }
        };
        let inner = match &p {
            Pattern::Exact(s) | Pattern::Below(s) | Pattern::OneLabel(s) => s,
        };
        if inner.contains('*') {
            return Err(err(
                "'*' is only allowed as \"/*\" (uri) or \"*.\" (dns)".into()
            ));
        }
        Ok(p)
    }

    /// Whether `value` matches. `refusing` (a deny entry): lenient, so that a value that is
    /// odd (dot segments, escapes, a wildcard certificate name) still matches what it reads as.
    fn matches(&self, value: &str, case_insensitive: bool, refusing: bool) -> bool {
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
                    && (refusing || !has_dot_segment_or_escape(&value[base.len()..]))
            }
            Pattern::OneLabel(suffix) => {
                if value.len() <= suffix.len()
                    || !value.is_char_boundary(value.len() - suffix.len())
                {
                    return false;
                }
                let (label, rest) = value.split_at(value.len() - suffix.len());
                // One real label: a certificate whose DNS name is itself a wildcard
                // (`*.example.com`) does not match `*.example.com`.
                eq(rest, suffix)
                    && !label.is_empty()
                    && !label.contains('.')
                    && (refusing
                        || label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            }
        }
    }
}

/// Whether a path below a wildcard's base could mean something else than it reads: a `.` or
/// `..` segment, or any percent-escape (`%2e`, `%2f`, …).
fn has_dot_segment_or_escape(rest: &str) -> bool {
    rest.contains('%')
        || rest
            .split(['/', '?', '#'])
            .any(|seg| seg == "." || seg == "..")
}

/// Checks a SPIFFE ID against the SPIFFE ID specification: `spiffe://` + a lower-case trust
/// domain of `[a-z0-9.-_]`, then optional `/segment`s of `[A-Za-z0-9.-_]`, none empty, `.` or
/// `..`; no percent-encoding, query, fragment, port or userinfo.
pub fn spiffe_id(uri: &str) -> Result<(), &'static str> {
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or("the scheme must be spiffe://")?;
    // Byte loops rather than `str` searches: this runs on every rule match of a URI.
    let rest = rest.as_bytes();
    let (td, path) = rest.split_at(rest.iter().position(|&b| b == b'/').unwrap_or(rest.len()));
    if td.is_empty() {
        return Err("the trust domain is empty");
    }
    if !td
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("the trust domain may hold only lower-case letters, digits, '.', '-' and '_'");
    }
    let Some((_, path)) = path.split_first() else {
        return Ok(());
    };
    for seg in path.split(|&b| b == b'/') {
        match seg {
            [] => return Err("a path segment is empty"),
            b"." | b".." => return Err("a path segment is '.' or '..'"),
            _ => {}
        }
        if !seg
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err("a path segment may hold only letters, digits, '.', '-' and '_'");
        }
    }
    Ok(())
}

/// Whether a certificate URI may be matched: any non-SPIFFE URI, or a valid SPIFFE ID.
fn matchable_uri(u: &str) -> bool {
    !u.starts_with("spiffe://") || spiffe_id(u).is_ok()
}

impl Matcher {
    fn matches(&self, id: &ClientIdentity, refusing: bool) -> bool {
        // Single-valued attributes: a certificate with two CNs matches an allow entry only if
        // both equal it, and a deny entry if either does.
        let single = |values: &[String], v: &str| {
            if refusing {
                values.iter().any(|x| x == v)
            } else {
                !values.is_empty() && values.iter().all(|x| x == v)
            }
        };
        match self {
            Matcher::Uri(p) => id
                .uris
                .iter()
                .any(|u| p.matches(u, false, refusing) && (refusing || matchable_uri(u))),
            Matcher::Dns(p) => id.dns_names.iter().any(|d| p.matches(d, true, refusing)),
            Matcher::Email(e) => id.emails.iter().any(|x| email_eq(x, e)),
            Matcher::Cn(v) => single(&id.common_names, v),
            Matcher::O(v) => id.organizations.iter().any(|x| x == v),
            Matcher::Ou(v) => id.organizational_units.iter().any(|x| x == v),
            Matcher::IssuerCn(v) => single(&id.issuer_common_names, v),
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

fn parse_sha256(v: &str) -> Result<[u8; 32], MatcherError> {
    let cleaned: String = v.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).map_err(|_| MatcherError::at("sha256", "not hex"))?;
    bytes
        .try_into()
        .map_err(|_| MatcherError::at("sha256", "must be 32 bytes (64 hex digits)"))
}

/// Why a matcher entry (`allow`, `deny`, `shadow`, an owner's `match`) cannot be used: the key
/// inside the entry, when one is to blame, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherError {
    pub key: Option<&'static str>,
    pub problem: String,
}

impl MatcherError {
    fn at(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key: Some(key),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for MatcherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(key) => write!(f, "{key}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for MatcherError {}

impl Rule {
    /// Compiles one allow entry (or an owner's match). Errors say which key is wrong.
    pub fn compile(raw: &RawMatcher) -> Result<Self, MatcherError> {
        Self::compile_as(raw, false)
    }

    /// Compiles one deny entry: ambiguous certificates match it (see [`Rule`]).
    pub fn compile_deny(raw: &RawMatcher) -> Result<Self, MatcherError> {
        Self::compile_as(raw, true)
    }

    fn compile_as(raw: &RawMatcher, refusing: bool) -> Result<Self, MatcherError> {
        let mut m = Vec::new();
        let mut text = Vec::new();
        let mut string = |key: &'static str, v: &Option<String>, m: &mut Vec<Matcher>| {
            let Some(v) = v else { return Ok(()) };
            text.push(format!("{key} = {v:?}"));
            if v.is_empty() {
                return Err(MatcherError::at(key, "must not be empty"));
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
                return Err(MatcherError::at(
                    "any",
                    "only `any = true` is meaningful; remove the key instead",
                ));
            }
            None => {}
        }
        if m.is_empty() {
            return Err(MatcherError {
                key: None,
                problem: "empty entry: give at least one of uri, dns, email, cn, o, ou, issuer_cn, sha256, any".into(),
            });
        }
        Ok(Self {
            matchers: m,
            refusing,
            text: format!("{{ {} }}", text.join(", ")),
        })
    }

    pub fn matches(&self, id: &ClientIdentity) -> bool {
        self.matchers.iter().all(|m| m.matches(id, self.refusing))
    }
}
