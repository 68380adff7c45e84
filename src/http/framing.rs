//! Request-line and framing rules checked before routing: methods, transfer-codings,
//! `Connection` tricks and upgrades. What passes here is framed one way only, so the upstream
//! cannot read it differently from certgate.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Version};

use crate::http::error::{Malformed, RequestError};
use crate::http::headers::connection_tokens;

/// `CONNECT` (a tunnel to anywhere) and `TRACE` (echoes credentials back) are never served;
/// a method with lower-case letters is not the upper-case method a route names (methods are
/// case-sensitive, RFC 9110 §9.1) and is refused rather than matched by a broader route.
pub fn check_method(method: &Method) -> Result<(), RequestError> {
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(RequestError::MethodNotAllowed(method.clone()));
    }
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        let shown: String = method.as_str().chars().take(32).collect();
        return Err(Malformed::MethodCase(shown).into());
    }
    Ok(())
}

/// Framing beyond what the parsers enforce: a transfer-coding other than one `chunked`
/// (`gzip, chunked`, `x, chunked`, two lines) is refused, as are two `Content-Length` fields and
/// a `Connection` header naming `Host` or `Content-Length` (which would strip them after
/// routing).
pub fn check_framing<B>(req: &Request<B>) -> Result<(), RequestError> {
    let headers = req.headers();
    // Two Content-Length fields (HTTP/2 passes them on; an HTTP/1.1 upstream could frame the
    // body by either): refused, whatever they say.
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if lengths.next().is_some() && lengths.next().is_some() {
        return Err(Malformed::ContentLengths.into());
    }
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        let single_chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !single_chunked || te.next().is_some() {
            return Err(Malformed::TransferEncoding.into());
        }
    }
    if headers.contains_key(header::CONNECTION) {
        for t in connection_tokens(headers) {
            for protected in ["host", "content-length"] {
                if t.eq_ignore_ascii_case(protected) {
                    return Err(Malformed::ConnectionNames(protected).into());
                }
            }
        }
    }
    Ok(())
}

/// `listener.max_request_header_bytes`, exactly: the parser's buffer (HTTP/1.1) and header
/// list bound (HTTP/2) only cap memory and can let a head somewhat past the limit through.
/// Larger gets 431.
pub fn check_head_size<B>(req: &Request<B>, limit: usize) -> Result<(), RequestError> {
    if head_size(req) > limit {
        return Err(RequestError::HeadTooLarge(limit));
    }
    Ok(())
}

/// A request head's size as HTTP/1.1 carries it: the request line, each field as
/// `name: value` with its CRLF, and the closing CRLF. An HTTP/2 request counts as its HTTP/1.1
/// form (its `:scheme` and `:authority` in the target, where Host would carry them).
pub fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    // "METHOD SP target SP HTTP/1.1 CRLF"
    let line = req.method().as_str().len() + 1 + target + 1 + 8 + 2;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// The upgrade a request asks for: `Ok(Some("websocket"))` for an HTTP/1.1 `GET` WebSocket
/// handshake, `Ok(None)` when it asks for none. Any other upgrade (`h2c`, `TLS/1.2`, a list)
/// is refused: a tunnel to an upstream that speaks another protocol would carry requests past
/// routing and policy.
pub fn upgrade_request<B>(req: &Request<B>) -> Result<Option<HeaderValue>, RequestError> {
    let headers = req.headers();
    let Some(upgrade) = headers.get(header::UPGRADE) else {
        return Ok(None);
    };
    if !connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        // Without `Connection: upgrade` it is just a hop-by-hop header, stripped on the way.
        return Ok(None);
    }
    let websocket = upgrade
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
        && headers.get_all(header::UPGRADE).iter().count() == 1;
    if !websocket || req.version() != Version::HTTP_11 || req.method() != Method::GET {
        let shown = String::from_utf8_lossy(upgrade.as_bytes())
            .chars()
            .take(64)
            .collect();
        return Err(Malformed::Upgrade(shown).into());
    }
    Ok(Some(HeaderValue::from_static("websocket")))
}

/// Whether an upstream's `101` completes the WebSocket upgrade that was asked for.
pub fn accepts_websocket(response_headers: &HeaderMap) -> bool {
    response_headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The declared body length, when there is one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rewrites `Content-Length` in canonical form (`05` → `5`), so the upstream reads the length
/// certgate framed the body with. Canonical values are left alone (no allocation).
pub fn canonical_content_length(headers: &mut HeaderMap) {
    let Some(v) = headers.get(header::CONTENT_LENGTH) else {
        return;
    };
    let b = v.as_bytes();
    let canonical =
        !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1);
    if canonical {
        return;
    }
    match declared_length(headers) {
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        // The parser accepted it but it is not one number (`5, 5`): keep the first.
        None => {
            let first = v
                .to_str()
                .ok()
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(n) = first {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_counts_as_its_bytes_on_the_wire() {
        let wire = "GET /a?b=c HTTP/1.1\r\nhost: example.com\r\nx-long: 0123456789\r\n\r\n";
        let req = Request::get("/a?b=c")
            .header("host", "example.com")
            .header("x-long", "0123456789")
            .body(())
            .unwrap();
        assert_eq!(head_size(&req), wire.len());
        assert!(check_head_size(&req, wire.len()).is_ok());
        assert!(matches!(
            check_head_size(&req, wire.len() - 1),
            Err(RequestError::HeadTooLarge(_))
        ));
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn methods() {
        assert!(check_method(&Method::GET).is_ok());
        assert!(check_method(&Method::from_bytes(b"PROPFIND").unwrap()).is_ok());
        for m in ["CONNECT", "TRACE"] {
            let e = check_method(&Method::from_bytes(m.as_bytes()).unwrap()).unwrap_err();
            assert_eq!(e.status(), 405, "{m}");
        }
        for m in ["get", "Get", "delete"] {
            let e = check_method(&Method::from_bytes(m.as_bytes()).unwrap()).unwrap_err();
            assert_eq!(e.status(), 400, "{m}");
        }
    }

    #[test]
    fn transfer_codings_and_connection_tricks() {
        assert!(check_framing(&req("POST", &[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&req("POST", &[("transfer-encoding", "Chunked")])).is_ok());
        for te in ["gzip, chunked", "x, chunked", "chunked, chunked"] {
            assert!(
                check_framing(&req("POST", &[("transfer-encoding", te)])).is_err(),
                "{te}"
            );
        }
        let two = req(
            "POST",
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert!(check_framing(&two).is_err());
        assert!(check_framing(&req("GET", &[("connection", "keep-alive, x-hop")])).is_ok());
        assert!(check_framing(&req("GET", &[("connection", "close, Host")])).is_err());
        assert!(check_framing(&req("GET", &[("connection", "content-length")])).is_err());
        let two = [("content-length", "5"), ("content-length", "5")];
        assert!(check_framing(&req("POST", &two)).is_err());
        assert!(check_framing(&req("POST", &two[..1])).is_ok());
    }

    #[test]
    fn only_websocket_upgrades() {
        let ws = req(
            "GET",
            &[("connection", "Upgrade"), ("upgrade", "WebSocket")],
        );
        assert_eq!(upgrade_request(&ws).unwrap().unwrap(), "websocket");
        assert!(
            upgrade_request(&req("GET", &[("upgrade", "h2c")]))
                .unwrap()
                .is_none()
        );
        for u in ["h2c", "TLS/1.2", "websocket, h2c"] {
            let r = req(
                "GET",
                &[("connection", "upgrade, http2-settings"), ("upgrade", u)],
            );
            assert_eq!(upgrade_request(&r).unwrap_err().status(), 400, "{u}");
        }
        let post = req(
            "POST",
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert!(upgrade_request(&post).is_err());
    }

    #[test]
    fn content_length_is_forwarded_canonical() {
        for (raw, want) in [("05", "5"), ("0", "0"), ("17", "17"), ("007", "7")] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(raw));
            canonical_content_length(&mut h);
            assert_eq!(h.get(header::CONTENT_LENGTH).unwrap(), want, "{raw}");
        }
    }
}
