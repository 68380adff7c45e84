//! Header rewriting between the client and the upstream: hop-by-hop headers, the identity and
//! forwarding headers a client must never be able to set, and the ones certgate sets instead.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::authn::identity::ClientIdentity;
use crate::authn::token::TokenHeaders;

pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_TOKEN_SUBJECT: HeaderName = HeaderName::from_static("x-token-subject");
static X_CLIENT_API_KEY_ID: HeaderName = HeaderName::from_static("x-client-api-key-id");
static X_CLIENT_OWNER: HeaderName = HeaderName::from_static("x-client-owner");
static X_TOKEN_CLIENT_ID: HeaderName = HeaderName::from_static("x-token-client-id");
static X_TOKEN_SCOPE: HeaderName = HeaderName::from_static("x-token-scope");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that describe one hop only (RFC 9110 §7.6.1, plus the h2c upgrade's
/// `HTTP2-Settings`), removed in both directions.
fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &HTTP2_SETTINGS,
    ]
}

/// Families of `x-` headers that carry a caller's identity, its network origin, a path or
/// method override, or what a proxy in front vouches for, somewhere in the industry (by prefix,
/// after `x-`). A client sends none of them.
const X_FAMILIES: [&str; 29] = [
    "forwarded",         // X-Forwarded, -For/-Proto/-Host/-Port/-Client-Cert (XFCC) …
    "ssl",               // X-SSL-Cert, X-SSL-Client-* (nginx, HAProxy, F5)
    "client-",           // X-Client-Cert, X-Client-Verify, X-Client-S-DN, X-Client-IP …
    "arr-clientcert",    // IIS ARR
    "amzn-mtls-",        // AWS ALB mTLS
    "amzn-oidc-",        // AWS ALB OIDC (the verified user)
    "remote-user",       // CGI-style proxies
    "spiffe-id",         // SPIFFE-aware proxies
    "real-ip",           // nginx realip
    "cluster-client-ip", // Rackspace, some load balancers
    "certgate-",         // our own namespace
    "token-",            // x-token-subject / -client-id / -scope (verified token claims)
    "http-method",       // X-HTTP-Method, X-HTTP-Method-Override
    "method-override",   // X-Method-Override
    "original-",         // X-Original-URL/-URI/-Method (IIS, Symfony, Zend: path override),
    //                        X-Original-Forwarded-For, X-Original-Host (ingress-nginx)
    "rewrite-url",         // X-Rewrite-URL (IIS, Zend)
    "authenticated-",      // X-Authenticated-User, -Groups (auth proxies)
    "auth-request-",       // X-Auth-Request-User, -Email (oauth2-proxy)
    "webauth-",            // X-WEBAUTH-USER (Grafana auth proxy)
    "ms-client-principal", // X-MS-CLIENT-PRINCIPAL, -NAME, -ID (Azure App Service)
    "goog-authenticated-", // X-Goog-Authenticated-User-Email (Google IAP)
    "consumer-",           // X-Consumer-ID, -Username (Kong)
    "user",                // X-User, X-User-Id, X-Username, X-Userinfo …
    "principal",           // X-Principal
    "proxy-user",          // X-Proxy-User
    "tls-client-cert",     // X-TLS-Client-Cert
    "mtls-client-cert",    // X-Mtls-Client-Cert
    "envoy-",              // X-Envoy-* (Envoy reads them as trusted internal instructions)
    "remote-addr",         // X-Remote-Addr
];

/// Whether a client-sent header is dropped before forwarding: an identity, forwarding,
/// impersonation or override family, or a name with `_` (CGI/WSGI upstreams read `_` and `-`
/// as one, so `x_forwarded_client_cert` would arrive as XFCC).
pub fn is_screened(name: &HeaderName) -> bool {
    let n = name.as_str();
    // Dispatched on the first byte: every request header passes here.
    let family = match n.as_bytes().first() {
        Some(b'x') => n
            .strip_prefix("x-")
            .is_some_and(|rest| X_FAMILIES.iter().any(|f| rest.starts_with(f))),
        // RFC 9440 Client-Cert(-Chain), Cloudflare's client IP and Access headers.
        Some(b'c') => {
            n == "client-cert"
                || n == "client-cert-chain"
                || n == "cf-connecting-ip"
                || n.starts_with("cf-access-")
        }
        // RFC 7239, Fastly's client IP.
        Some(b'f') => n == "forwarded" || n == "fastly-client-ip",
        // CGI-style spellings without `x-`.
        Some(b's') => n.starts_with("ssl-client-"),
        Some(b'r') => n == "remote-user",
        // Kubernetes API impersonation (-User, -Group, -Uid, -Extra-*).
        Some(b'i') => n.starts_with("impersonate-"),
        // Akamai, Cloudflare Enterprise.
        Some(b't') => n == "true-client-ip",
        Some(b'a') => n == "authorization-client-cert",
        _ => false,
    };
    family || n.contains('_')
}

/// The `x-forwarded-client-cert` value for a verified client (built once per connection):
/// `Hash=<hex>;Subject="<dn>";URI=<uri>;DNS=<dns>` with one `URI=`/`DNS=` pair per SAN, as Envoy
/// does. Characters that cannot appear in a header value are written as `\xHH`.
pub fn xfcc(id: &ClientIdentity) -> HeaderValue {
    let (hash, subject, uris, dns) = (&id.sha256_hex, &id.subject, &id.uris, &id.dns_names);
    let mut v = String::with_capacity(96 + subject.len());
    v.push_str("Hash=");
    v.push_str(hash);
    v.push_str(";Subject=\"");
    for c in subject.chars() {
        if c == '"' || c == '\\' {
            v.push('\\');
        }
        v.push(c);
    }
    v.push('"');
    for u in uris {
        push_xfcc_value(&mut v, "URI", u);
    }
    for d in dns {
        push_xfcc_value(&mut v, "DNS", d);
    }
    header_value_lossless(&v)
}

fn push_xfcc_value(v: &mut String, key: &str, value: &str) {
    v.push(';');
    v.push_str(key);
    v.push('=');
    if value.contains([',', ';', '=', '"']) {
        v.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                v.push('\\');
            }
            v.push(c);
        }
        v.push('"');
    } else {
        v.push_str(value);
    }
}

fn header_value_lossless(s: &str) -> HeaderValue {
    if let Ok(v) = HeaderValue::from_str(s) {
        return v;
    }
    let mut clean = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            clean.push(char::from(b));
        } else {
            clean.push_str(&format!("\\x{b:02X}"));
        }
    }
    // Only printable ASCII remains, which is always a valid header value.
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// What certgate tells the upstream about one request.
pub struct Forwarding<'a> {
    /// The verified client's `x-forwarded-client-cert` value ([`xfcc`]).
    pub xfcc: Option<&'a HeaderValue>,
    pub peer_ip: &'a HeaderValue,
    pub request_id: &'a HeaderValue,
    /// The canonical authority, sent as `Host`.
    pub authority: &'a HeaderValue,
    /// `Some("websocket")` for an accepted WebSocket upgrade.
    pub upgrade: Option<&'a HeaderValue>,
    /// Operator-configured names to drop as well (`listener.strip_request_headers`).
    pub strip: &'a [HeaderName],
    /// The verified access token's `x-token-*` values.
    pub token: Option<&'a TokenHeaders>,
    /// False on a token route that does not forward `Authorization`.
    pub keep_authorization: bool,
    /// The API key that authenticated the request: its id and owner, for the upstream.
    pub api_key: Option<(&'a HeaderValue, &'a HeaderValue)>,
    /// With `[api_keys]`: the header keys come in, removed (as is `Authorization: ApiKey`).
    pub key_header: Option<&'a HeaderName>,
    /// The upstream's own credential (`[upstream_credentials]`): set, replacing any copy the
    /// client sent.
    pub credential: Option<(&'a HeaderName, &'a HeaderValue)>,
}

/// Rewrites a client's request headers for the upstream: hop-by-hop headers, every screened
/// header ([`is_screened`]) and the operator's extra names are removed, then `Host`, the
/// verified identity (XFCC) and the forwarding headers are set. `TE: trailers` survives (gRPC
/// needs it); an accepted upgrade keeps its `Upgrade`.
pub fn forwarding_headers(headers: &mut HeaderMap, f: &Forwarding<'_>) {
    let keep_te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    strip_hop_by_hop(headers);
    headers.remove(header::TE);
    if keep_te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Collect only when there is something to remove: the common case allocates nothing.
    let dropped = |n: &HeaderName| is_screened(n) || f.strip.contains(n);
    if headers.keys().any(dropped) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| dropped(n)).cloned().collect();
        for name in names {
            headers.remove(&name);
        }
    }
    // Room for the headers added below, so the map grows at most once.
    headers.reserve(9);
    // A canonical Host the client sent is the very value (no insert); otherwise set it.
    if headers.get(header::HOST) != Some(f.authority) {
        headers.insert(header::HOST, f.authority.clone());
    }
    if let Some(xfcc) = f.xfcc {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), xfcc.clone());
    }
    headers.insert(X_FORWARDED_FOR.clone(), f.peer_ip.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    headers.insert(X_REQUEST_ID.clone(), f.request_id.clone());
    if !f.keep_authorization || is_api_key_authorization(headers) {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(name) = f.key_header {
        headers.remove(name);
    }
    if let Some((name, value)) = f.credential {
        headers.insert(name.clone(), value.clone());
    }
    if let Some((id, owner)) = f.api_key {
        headers.insert(X_CLIENT_API_KEY_ID.clone(), id.clone());
        headers.insert(X_CLIENT_OWNER.clone(), owner.clone());
    }
    if let Some(t) = f.token {
        for (name, value) in [
            (&X_TOKEN_SUBJECT, &t.subject),
            (&X_TOKEN_CLIENT_ID, &t.client_id),
            (&X_TOKEN_SCOPE, &t.scope),
        ] {
            if let Some(v) = value {
                headers.insert(name.clone(), v.clone());
            }
        }
    }
    if let Some(proto) = f.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
}

/// `Authorization: ApiKey …`: a legacy key, which never goes upstream.
fn is_api_key_authorization(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().len() > 7 && v.as_bytes()[..7].eq_ignore_ascii_case(b"apikey "))
}

/// Removes hop-by-hop headers and the headers `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // "keep-alive"/"close"/"upgrade" name nothing beyond the fixed list, so the common case
    // allocates nothing.
    let names_extra = connection_tokens(headers).any(|t| {
        !t.eq_ignore_ascii_case("keep-alive")
            && !t.eq_ignore_ascii_case("close")
            && !t.eq_ignore_ascii_case("upgrade")
    });
    if names_extra {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    // One pass to see whether there is anything to remove; most requests carry at most
    // `connection`, and a failed removal costs a hash lookup each.
    let hops = hop_by_hop();
    if headers.keys().any(|k| hops.contains(&k)) {
        for n in hops {
            headers.remove(n);
        }
    }
}

/// The comma-separated tokens of every `Connection` line, trimmed.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The client's `x-request-id`, when well-formed: logged as `client_request_id`, never used as
/// the gateway's own id (a client could otherwise make many requests share one id in the log).
pub fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.clone())
}

/// The gateway's id of a request: 32 hex digits of fresh randomness (128 bits), so unique and
/// unpredictable — neither a counter nor anything a client chose.
pub fn request_id() -> HeaderValue {
    let random = random_128();
    let (a, b) = random.split_at(8);
    let mut id = [0u8; 32];
    let (hi, lo) = id.split_at_mut(16);
    hex_u64(u64::from_be_bytes(a.try_into().unwrap_or_default()), hi);
    hex_u64(u64::from_be_bytes(b.try_into().unwrap_or_default()), lo);
    // One allocation, and clones (the upstream copy, the log) only count references; formatting
    // into a String and copying it made four per request.
    HeaderValue::from_maybe_shared(Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Request ids drawn per thread from one batch of CSPRNG output: one call into aws-lc per 256
/// ids instead of one per request (each call mixes in hardware randomness, 2.3% of the CPU of a
/// keep-alive request when paid per request).
const RANDOM_BATCH: usize = 4096;

struct RandomBatch {
    bytes: [u8; RANDOM_BATCH],
    used: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomBatch> = const {
        std::cell::RefCell::new(RandomBatch { bytes: [0; RANDOM_BATCH], used: RANDOM_BATCH })
    };
}

/// 16 bytes never handed out before.
fn random_128() -> [u8; 16] {
    let drawn = RANDOM.with(|cell| {
        let mut batch = cell.borrow_mut();
        if batch.used == RANDOM_BATCH {
            aws_lc_rs::rand::fill(&mut batch.bytes).ok()?;
            batch.used = 0;
        }
        let at = batch.used;
        batch.used += 16;
        let mut out = [0u8; 16];
        out.copy_from_slice(&batch.bytes[at..at + 16]);
        // Handed-out bytes do not stay behind in memory.
        batch.bytes[at..at + 16].fill(0);
        Some(out)
    });
    drawn.unwrap_or_else(|| {
        // Only if the OS has no randomness: still unique within the process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&(crate::util::time::unix_now() as u64).to_be_bytes());
        random[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        random
    })
}

/// `v` as 16 lower-case hex digits into `out`.
fn hex_u64(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate().take(16) {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
