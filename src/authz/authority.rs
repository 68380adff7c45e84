//! The request's authority: one rule for HTTP/1.1 `Host`, absolute-form targets and HTTP/2
//! `:authority`, so that routing and the upstream always see the same host.
//!
//! - HTTP/1.x: exactly one `Host` line (RFC 9112 §3.2); an absolute-form target's authority wins
//!   over it (and replaces it upstream).
//! - HTTP/2: `:authority`, or `Host` when there is no `:authority`; a `Host` that differs from
//!   `:authority` is refused (RFC 9113 §8.3.1).
//! - The value must be RFC 3986 `host [":" port]`: no userinfo, path, list or empty host; a port
//!   is 1..=65535.
//! - Matching uses the host lowercased, without the port and without one trailing dot; the
//!   upstream gets the same canonical form (with the port, if one was given).

use http::header::{self, HeaderValue};
use http::{Request, Version};

/// Why a request's authority was refused (each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("missing Host header")]
    Missing,
    #[error("more than one Host header")]
    Repeated,
    #[error("Host header differs from :authority")]
    Mismatch,
    #[error("authority carries user information")]
    UserInfo,
    #[error("malformed host")]
    BadHost,
    #[error("malformed port")]
    BadPort,
}

/// A validated authority in canonical form.
#[derive(Debug, Clone)]
pub struct RequestAuthority {
    /// `host[:port]`, lowercased, without a trailing dot: the `Host` the upstream receives.
    value: HeaderValue,
    /// Length of the host part of `value` (what routes match).
    host_len: usize,
}

impl RequestAuthority {
    /// The host routes match: lowercase, no port, no trailing dot (`[::1]` keeps its brackets).
    pub fn host(&self) -> &str {
        // `value` is built from validated ASCII, so this cannot fail.
        self.value.to_str().map_or("", |s| &s[..self.host_len])
    }

    /// The canonical `host[:port]`, as forwarded in `Host` / `:authority`.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Validates and canonicalises one `host[:port]` value.
    pub fn parse(raw: &[u8]) -> Result<Self, AuthorityError> {
        Self::parse_shared(raw, None)
    }

    /// As [`Self::parse`]; `shared` is `raw` as a header value, reused (no copy) when `raw` is
    /// already canonical — the common case of a plain `Host` header.
    fn parse_shared(raw: &[u8], shared: Option<&HeaderValue>) -> Result<Self, AuthorityError> {
        if raw.contains(&b'@') {
            return Err(AuthorityError::UserInfo);
        }
        let (host, port) = split_port(raw)?;
        let (host, upper) = validate_host(host)?;
        if let Some(p) = port {
            validate_port(p)?;
        }
        let canonical = !upper && host.len() == raw.len() - port.map_or(0, |p| p.len() + 1);
        let value = if canonical {
            match shared {
                Some(v) => v.clone(),
                None => HeaderValue::from_bytes(raw).map_err(|_| AuthorityError::BadHost)?,
            }
        } else {
            let mut v = host.to_ascii_lowercase();
            if let Some(p) = port {
                v.push(b':');
                v.extend_from_slice(p);
            }
            HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
                .map_err(|_| AuthorityError::BadHost)?
        };
        Ok(Self {
            value,
            host_len: host.len(),
        })
    }

    /// The authority of `req` by the rules in the module doc; a value `seen` already validated
    /// on this connection is not validated again.
    pub fn of<B>(req: &Request<B>, seen: &AuthorityCache) -> Result<Self, AuthorityError> {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(AuthorityError::Repeated);
        }
        let target = req.uri().authority();
        if req.version() == Version::HTTP_2 {
            return match (target, host) {
                (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
                    Err(AuthorityError::Mismatch)
                }
                (Some(a), _) => seen.parse(a.as_str().as_bytes(), None),
                (None, Some(h)) => seen.parse(h.as_bytes(), Some(h)),
                (None, None) => Err(AuthorityError::Missing),
            };
        }
        let host = host.ok_or(AuthorityError::Missing)?;
        match target {
            // RFC 9112 §3.2.2: the target's authority wins; Host must still be present and valid.
            Some(a) => {
                Self::parse(host.as_bytes())?;
                Self::parse(a.as_str().as_bytes())
            }
            None => seen.parse(host.as_bytes(), Some(host)),
        }
    }
}

/// The first authority a connection's requests named, with the exact bytes it came from: the
/// requests on one connection nearly always name the same host, so the same bytes are not
/// validated again (nor, on HTTP/2, copied into a new header value for every request).
#[derive(Default)]
pub struct AuthorityCache(std::sync::OnceLock<(Box<[u8]>, RequestAuthority)>);

impl AuthorityCache {
    fn parse(
        &self,
        raw: &[u8],
        shared: Option<&HeaderValue>,
    ) -> Result<RequestAuthority, AuthorityError> {
        if let Some((bytes, authority)) = self.0.get() {
            if **bytes == *raw {
                return Ok(authority.clone());
            }
            return RequestAuthority::parse_shared(raw, shared);
        }
        let authority = RequestAuthority::parse_shared(raw, shared)?;
        // Its own copy of the value: a shared one points into the request's read buffer, which
        // must not be held for the life of the connection.
        if let Ok(value) = HeaderValue::from_bytes(authority.value.as_bytes()) {
            let kept = RequestAuthority {
                value,
                host_len: authority.host_len,
            };
            let _ = self.0.set((raw.into(), kept));
        }
        Ok(authority)
    }
}

/// Splits `host[:port]`; an IPv6 literal keeps its brackets.
fn split_port(raw: &[u8]) -> Result<(&[u8], Option<&[u8]>), AuthorityError> {
    if raw.first() == Some(&b'[') {
        let end = raw
            .iter()
            .position(|&c| c == b']')
            .ok_or(AuthorityError::BadHost)?;
        return match &raw[end + 1..] {
            [] => Ok((raw, None)),
            [b':', port @ ..] => Ok((&raw[..=end], Some(port))),
            _ => Err(AuthorityError::BadHost),
        };
    }
    match raw.iter().position(|&c| c == b':') {
        None => Ok((raw, None)),
        Some(i) => Ok((&raw[..i], Some(&raw[i + 1..]))),
    }
}

/// Whether a byte may appear in a reg-name label: letters, digits, `-`, `_`, `~`.
const fn label_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')
}

/// A reg-name of dot-separated labels (letters, digits, `-`, `_`, `~`; 1..=63 bytes each), an
/// IPv4 address, or a bracketed IPv6 literal. Returns the host without one trailing dot, and
/// whether it has upper-case letters. One pass over the bytes: this runs for every request.
fn validate_host(host: &[u8]) -> Result<(&[u8], bool), AuthorityError> {
    if let Some(inner) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        let ok = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        return if ok {
            Ok((host, inner.iter().any(u8::is_ascii_uppercase)))
        } else {
            Err(AuthorityError::BadHost)
        };
    }
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(AuthorityError::BadHost);
    }
    let (mut label, mut upper) = (0usize, false);
    for &c in host {
        if c == b'.' {
            if label == 0 {
                return Err(AuthorityError::BadHost);
            }
            label = 0;
        } else if label_byte(c) && label < 63 {
            upper |= c.is_ascii_uppercase();
            label += 1;
        } else {
            return Err(AuthorityError::BadHost);
        }
    }
    if label == 0 {
        return Err(AuthorityError::BadHost);
    }
    Ok((host, upper))
}

fn validate_port(port: &[u8]) -> Result<(), AuthorityError> {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(AuthorityError::BadPort);
    }
    let n: u32 = port.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'));
    if n == 0 || n > 65535 {
        return Err(AuthorityError::BadPort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Result<(String, String), AuthorityError> {
        RequestAuthority::parse(s.as_bytes()).map(|a| {
            (
                a.host().to_string(),
                a.header_value().to_str().unwrap().to_string(),
            )
        })
    }

    #[test]
    fn canonical_forms() {
        let ok = |s: &str, host: &str, value: &str| {
            assert_eq!(parsed(s), Ok((host.into(), value.into())), "{s}");
        };
        ok("b.example.com", "b.example.com", "b.example.com");
        ok("B.Example.COM.", "b.example.com", "b.example.com");
        ok("b.example.com.:8443", "b.example.com", "b.example.com:8443");
        ok("localhost:1", "localhost", "localhost:1");
        ok("10.0.0.1:65535", "10.0.0.1", "10.0.0.1:65535");
        ok("[::1]:8443", "[::1]", "[::1]:8443");
        ok("[::1]", "[::1]", "[::1]");
        ok("svc_name.ns", "svc_name.ns", "svc_name.ns");
    }

    #[test]
    fn malformed_values_are_refused() {
        use AuthorityError::*;
        for (s, e) in [
            ("user@b", UserInfo),
            ("b/x", BadHost),
            ("b,a", BadHost),
            ("", BadHost),
            (":abc", BadHost),
            ("b:99999", BadPort),
            ("b:0", BadPort),
            ("b:", BadPort),
            ("b:1:2", BadPort),
            ("b..c", BadHost),
            (".", BadHost),
            ("b c", BadHost),
            ("[::1", BadHost),
            ("[zz]", BadHost),
            ("[::1]x", BadHost),
            ("b%2e", BadHost),
            (
                "b.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.c",
                BadHost,
            ),
        ] {
            assert_eq!(parsed(s), Err(e), "{s:?}");
        }
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn one_rule_for_every_protocol() {
        use AuthorityError::*;
        let host = |r: Request<()>| {
            RequestAuthority::of(&r, &AuthorityCache::default()).map(|a| a.host().to_string())
        };
        let h1 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        assert_eq!(host(req(h1, "/x", &["a.example"])), Ok("a.example".into()));
        assert_eq!(host(req(h1, "/x", &[])), Err(Missing));
        assert_eq!(host(req(h1, "/x", &["a", "b"])), Err(Repeated));
        assert_eq!(
            host(req(h1, "http://a.example/svc", &["b.example"])),
            Ok("a.example".into()),
            "absolute-form wins"
        );
        assert_eq!(host(req(h1, "http://a.example/svc", &[])), Err(Missing));
        assert_eq!(
            host(req(h1, "http://u@a.example/svc", &["a"])),
            Err(UserInfo)
        );
        assert_eq!(
            host(req(h2, "https://a.example/x", &[])),
            Ok("a.example".into())
        );
        assert_eq!(
            host(req(h2, "https://a.example/x", &["A.example"])),
            Ok("a.example".into())
        );
        assert_eq!(host(req(h2, "https://a.example/x", &["b"])), Err(Mismatch));
        assert_eq!(host(req(h2, "/x", &["b.example"])), Ok("b.example".into()));
        assert_eq!(host(req(h2, "/x", &[])), Err(Missing));
    }

    /// The per-connection cache answers only for the very bytes it validated: every other value
    /// on the connection is checked in full, and the protocol rules still apply to each request.
    #[test]
    fn a_connection_validates_every_value_it_has_not_seen() {
        use AuthorityError::*;
        let seen = AuthorityCache::default();
        let of = |r: Request<()>| {
            RequestAuthority::of(&r, &seen).map(|a| a.header_value().to_str().unwrap().to_string())
        };
        let (h1, h2) = (Version::HTTP_11, Version::HTTP_2);
        // A refused value is not remembered.
        assert_eq!(of(req(h1, "/", &["b c"])), Err(BadHost));
        assert_eq!(
            of(req(h1, "/", &["A.Example:8443"])),
            Ok("a.example:8443".into())
        );
        assert_eq!(
            of(req(h1, "/", &["A.Example:8443"])),
            Ok("a.example:8443".into())
        );
        assert_eq!(of(req(h1, "/", &["A.Example:8443", "x"])), Err(Repeated));
        assert_eq!(of(req(h1, "/", &["user@a.example"])), Err(UserInfo));
        assert_eq!(of(req(h1, "/", &["a.example:99999"])), Err(BadPort));
        assert_eq!(of(req(h1, "/", &["b.example"])), Ok("b.example".into()));
        assert_eq!(
            of(req(h1, "/", &["A.Example:8443"])),
            Ok("a.example:8443".into())
        );

        let seen = AuthorityCache::default();
        let of = |r: Request<()>| RequestAuthority::of(&r, &seen).map(|a| a.host().to_string());
        assert_eq!(
            of(req(h2, "https://a.example/x", &[])),
            Ok("a.example".into())
        );
        assert_eq!(of(req(h2, "https://a.example/x", &["b"])), Err(Mismatch));
        assert_eq!(
            of(req(h2, "https://a.example/x", &[])),
            Ok("a.example".into())
        );
        assert_eq!(of(req(h2, "https://a.example:0/x", &[])), Err(BadPort));
    }
}
