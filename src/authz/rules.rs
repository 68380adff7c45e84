//! Allow/deny entries compiled once into typed matchers over a [`ClientIdentity`].

use crate::authn::identity::ClientIdentity;
use crate::config::RawMatcher;

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
