//! Request path normalisation: the single place that decides what path a request is for.
//!
//! Routing, policy and the upstream all see the path returned here, so what was authorised is
//! exactly what is served. Rules:
//! - percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded; other escapes are
//!   kept with upper-case hex;
//! - an encoded `/` or `\`, a raw `\`, NUL (raw or encoded), or a malformed escape is rejected:
//!   such paths mean different things to different servers;
//! - `.` and `..` segments are removed; a `..` that would climb above `/` is rejected;
//! - empty segments (`//`) are merged;
//! - escapes that decode to invalid or overlong UTF-8 (`%c0%ae`) are rejected, as is a segment
//!   ending in `.`, space or tab (raw or escaped): Windows and some frameworks drop those, so
//!   `/admin.` would be served as `/admin` while a broader route decided it;
//! - `%3B` is a `;`: a segment's parameters start at either ([`has_params`]).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("encoded '/' or '\\', raw '\\' or NUL in path")]
    Ambiguous,
    #[error("dot segments escape the root")]
    EscapesRoot,
    #[error("escapes that are not UTF-8 (overlong or invalid)")]
    NotUtf8,
    #[error("a path segment ends in '.', space or tab")]
    TrailingDotOrSpace,
}

/// Normalises an origin-form path (no query). Clean paths are returned borrowed, without allocating.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_clean(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    remove_dot_segments(&decoded).map(Cow::Owned)
}

fn is_clean(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.iter().any(|&c| c == b'%' || c == b'\\' || c == 0) {
        return false;
    }
    // `raw` starts with '/', so the first split item is empty and skipped.
    let mut segments = raw[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) || ends_badly(seg) {
            return false;
        }
    }
    true
}

/// A segment (not a dot segment) ending in `.`, space or tab, raw or escaped.
fn ends_badly(seg: &str) -> bool {
    if seg == "." || seg == ".." {
        return false;
    }
    let b = seg.as_bytes();
    matches!(b.last(), Some(b'.' | b' ' | b'\t'))
        || b.len() >= 3 && {
            let tail = &b[b.len() - 3..];
            tail[0] == b'%'
                && (tail[1..].eq_ignore_ascii_case(b"2e")
                    || tail[1..].eq_ignore_ascii_case(b"20")
                    || tail[1..] == *b"09")
        }
}

/// Whether a normalised path carries `;` parameters (`;` or its escape `%3B`).
pub fn has_params(normalised: &str) -> bool {
    // Byte searches first: a substring search costs more to set up than a typical path.
    normalised.contains(';') || (normalised.contains('%') && normalised.contains("%3B"))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Every escape decoded, to check that what the escapes spell is UTF-8.
    let mut spelled: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex_val),
                    b.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = hi << 4 | lo;
                if v == b'/' || v == b'\\' || v == 0 {
                    return Err(PathError::Ambiguous);
                }
                spelled.push(v);
                if is_unreserved(v) {
                    out.push(v as char);
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
                }
                i += 3;
            }
            b'\\' | 0 => return Err(PathError::Ambiguous),
            _ => {
                // Copy the run up to the next '%' (keeps multi-byte UTF-8 intact).
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'%' || c == b'\\' || c == 0)
                    .map_or(b.len(), |p| i + p);
                out.push_str(&raw[i..end]);
                spelled.extend_from_slice(&b[i..end]);
                i = end;
            }
        }
    }
    if std::str::from_utf8(&spelled).is_err() {
        return Err(PathError::NotUtf8);
    }
    Ok(out)
}

fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => trailing_slash = last,
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                trailing_slash = last;
            }
            s if ends_badly(s) => return Err(PathError::TrailingDotOrSpace),
            s => {
                stack.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// A normalised path with every segment's `;` parameters removed, normalised again: what a
/// Java upstream (Tomcat, Jetty, Spring) serves for it. `/public/..;/admin` → `/admin`,
/// `/a;jsessionid=1/b` → `/a/b`.
pub fn without_params(normalised: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(normalised.len());
    for (i, seg) in normalised.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let end = [seg.find(';'), seg.find("%3B")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(seg.len());
        out.push_str(&seg[..end]);
    }
    normalize(&out).map(Cow::into_owned)
}

/// Segment-aware prefix match: `/a` matches `/a` and `/a/b`, never `/ab`. `/` matches everything.
/// `prefix` must itself be normalised and carry no trailing slash (except `/`).
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn clean_paths_are_borrowed() {
        assert!(matches!(normalize("/a/b/c"), Ok(Cow::Borrowed("/a/b/c"))));
        assert!(matches!(normalize("/a/b/"), Ok(Cow::Borrowed("/a/b/"))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed("/"))));
        assert!(matches!(normalize("/a..b/.c"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_and_double_slashes() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/..").unwrap_err(), PathError::EscapesRoot);
        assert_eq!(n("/a/../../b").unwrap_err(), PathError::EscapesRoot);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(n("/caf\u{e9}/%7e").unwrap(), "/caf\u{e9}/~");
        assert_eq!(n("/public/..%2fadmin").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/public%2fadmin").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/public%2Fadmin").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/a%5cb").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/a\\b").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/a%00").unwrap_err(), PathError::Ambiguous);
        assert_eq!(n("/a%zz").unwrap_err(), PathError::BadEscape);
        assert_eq!(n("/a%2").unwrap_err(), PathError::BadEscape);
        assert_eq!(n("a/b").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(n("*").unwrap_err(), PathError::NotAbsolute);
    }

    #[test]
    fn normalised_output_is_a_fixed_point() {
        for p in [
            "/public/%2e%2e/admin",
            "/a//b/./c/",
            "/x/%7e/../y",
            "/a%20b",
        ] {
            let once = n(p).unwrap();
            assert_eq!(n(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn overlong_and_invalid_utf8_escapes_are_refused() {
        assert_eq!(
            n("/public/%c0%ae%c0%ae/admin").unwrap_err(),
            PathError::NotUtf8
        );
        assert_eq!(n("/%c0%af").unwrap_err(), PathError::NotUtf8);
        assert_eq!(n("/%e0%80%ae").unwrap_err(), PathError::NotUtf8);
        assert_eq!(n("/%ff").unwrap_err(), PathError::NotUtf8);
        assert_eq!(n("/%c3").unwrap_err(), PathError::NotUtf8);
        assert_eq!(n("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(n("/caf\u{e9}%20x").unwrap(), "/caf\u{e9}%20x");
    }

    #[test]
    fn segments_ending_in_dot_space_or_tab_are_refused() {
        for p in [
            "/admin.",
            "/admin%2e",
            "/admin%2E",
            "/admin%20",
            "/admin%09",
            "/a./b",
            "/a/...",
            "/a%20/b",
        ] {
            assert_eq!(n(p).unwrap_err(), PathError::TrailingDotOrSpace, "{p}");
        }
        for p in [
            "/a/.",
            "/a/..",
            "/v1.0",
            "/.well-known/x",
            "/a..b",
            "/a%20b",
        ] {
            assert!(n(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn escaped_semicolons_are_parameters_too() {
        assert_eq!(n("/admin%3bx").unwrap(), "/admin%3Bx");
        assert!(has_params("/admin%3Bx") && has_params("/a;b") && !has_params("/a%3Ab"));
        assert_eq!(without_params("/admin%3Bx").unwrap(), "/admin");
        assert_eq!(n("/public/..%3B/admin").unwrap(), "/public/..%3B/admin");
        assert_eq!(without_params("/public/..%3B/admin").unwrap(), "/admin");
    }

    #[test]
    fn path_parameters_are_removed_per_segment() {
        assert_eq!(without_params("/public/..;/admin").unwrap(), "/admin");
        assert_eq!(without_params("/admin;x=1").unwrap(), "/admin");
        assert_eq!(without_params("/a;jsessionid=1/b;v=2/").unwrap(), "/a/b/");
        assert_eq!(without_params("/;x/a").unwrap(), "/a");
        assert_eq!(
            without_params("/..;/x").unwrap_err(),
            PathError::EscapesRoot
        );
    }

    #[test]
    fn prefix_is_segment_aware() {
        assert!(has_prefix("/payments", "/payments"));
        assert!(has_prefix("/payments/1", "/payments"));
        assert!(!has_prefix("/paymentsX", "/payments"));
        assert!(!has_prefix("/pay", "/payments"));
        assert!(has_prefix("/anything", "/"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Paths built from the pieces that make normalisers disagree: dot segments plain and
    /// encoded, empty segments, encoded slashes and backslashes, bad escapes, parameters,
    /// unreserved and reserved escapes, non-ASCII.
    fn tricky_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("B".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("".to_string()),
            Just("%2e".to_string()),
            Just("%2E%2e".to_string()),
            Just("%2f".to_string()),
            Just("%5C".to_string()),
            Just("\\".to_string()),
            Just("%00".to_string()),
            Just("%".to_string()),
            Just("%zz".to_string()),
            Just("%41".to_string()),
            Just("%7e".to_string()),
            Just("%3f".to_string()),
            Just("%25".to_string()),
            Just(";x=1".to_string()),
            Just("é".to_string()),
            "[a-z0-9._~-]{1,4}",
        ];
        prop::collection::vec(prop::collection::vec(piece, 0..3), 0..8).prop_map(|segs| {
            let mut p = String::new();
            for s in segs {
                p.push('/');
                p.push_str(&s.concat());
            }
            if p.is_empty() {
                p.push('/');
            }
            p
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn normalising_is_idempotent(p in tricky_path()) {
            if let Ok(once) = normalize(&p) {
                let twice = normalize(&once).expect("a normalised path normalises");
                prop_assert_eq!(twice.as_ref(), once.as_ref());
            }
        }

        #[test]
        fn a_normalised_path_has_no_dot_segments_empty_segments_or_encoded_separators(p in tricky_path()) {
            if let Ok(n) = normalize(&p) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"), "{n}");
                prop_assert!(!n.contains('\\') && !n.contains('\0'), "{n}");
                let lower = n.to_ascii_lowercase();
                for bad in ["%2f", "%5c", "%00", "%2e", "%41", "%7e"] {
                    prop_assert!(!lower.contains(bad), "{} in {}", bad, n);
                }
                for seg in n.split('/').skip(1) {
                    prop_assert!(seg != "." && seg != "..", "{n}");
                }
                // Every escape left is well formed and upper-case.
                let b = n.as_bytes();
                for (i, c) in b.iter().enumerate() {
                    if *c == b'%' {
                        prop_assert!(b.len() >= i + 3, "{n}");
                        for h in &b[i + 1..i + 3] {
                            prop_assert!(h.is_ascii_digit() || (b'A'..=b'F').contains(h), "{n}");
                        }
                    }
                }
            }
        }

        #[test]
        fn what_is_authorised_is_what_is_forwarded(p in tricky_path()) {
            // The route check and the upstream both get `normalize`'s output, and that output
            // is a fixed point: a prefix check on it cannot be undone by a second decoding.
            if let Ok(n) = normalize(&p) {
                let forwarded = normalize(&n).expect("fixed point");
                for prefix in ["/a", "/admin", "/a/B"] {
                    prop_assert_eq!(has_prefix(&n, prefix), has_prefix(&forwarded, prefix));
                }
                if let Ok(stripped) = without_params(&n) {
                    let again = normalize(&stripped).expect("fixed point").into_owned();
                    prop_assert_eq!(again, stripped);
                }
            }
        }
    }
}
