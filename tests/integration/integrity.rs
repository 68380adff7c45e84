//! Request-path integrity: what an attacker holding a valid client certificate tries — upgrade
//! tunnels past policy, host confusion, smuggled framing, spoofed identity headers, method and
//! path-parameter tricks, and stalling bodies to get upstreams ejected. Each case asserts the
//! status and what the upstream received (nothing, or exactly the sanitised request).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// Routes: `/ws` and everything else for `reader`; `/admin` for `admin` only; a host-bound
/// route on `b.example.com` to the second upstream; `/java` accepting path parameters.
fn config(up: &str, b_up: &str, listener_extra_upstream: &str) -> String {
    format!(
        r#"{}{}{}
[[routes]]
name = "b-host"
host = "b.example.com"
path_prefix = "/"
upstream = "b"
allow = [{{ uri = "{reader}" }}]

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "up"
allow = [{{ uri = "{admin}" }}]

[[routes]]
name = "java"
path_prefix = "/java"
upstream = "up"
allow_path_params = true
allow = [{{ uri = "{reader}" }}]

[[routes]]
name = "readonly"
path_prefix = "/readonly"
methods = ["GET"]
upstream = "up"
allow = [{{ uri = "{reader}" }}]

[[routes]]
name = "small"
path_prefix = "/small"
upstream = "up"
max_request_body = "64KiB"
allow = [{{ uri = "{reader}" }}]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "up"
allow = [{{ uri = "{reader}" }}]
"#,
        client_auth("require", "crls = [\"ca.crl\"]"),
        upstream_section("up", up, listener_extra_upstream),
        upstream_section("b", b_up, ""),
        reader = spiffe("reader"),
        admin = spiffe("admin"),
    )
}

struct Setup {
    pki: Pki,
    reader: certgate_testpki::Issued,
    up: Upstream,
    b: Upstream,
    gw: Gateway,
    client: TlsClient,
}

async fn setup_with(listener_extra: &str, upstream_extra: &str) -> Setup {
    let pki = Pki::new();
    let reader = pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "admin", workload("admin"));
    pki.write(
        "ca.crl",
        &pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    let up = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start_with_listener(
        &pki,
        listener_extra,
        &config(&up.url(), &b.url(), upstream_extra),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    Setup {
        pki,
        reader,
        up,
        b,
        gw,
        client,
    }
}

async fn setup() -> Setup {
    setup_with("", "").await
}

/// Sends each raw request and asserts it is refused with `status` and reaches no upstream.
async fn assert_refused_raw(s: &Setup, status: u16, cases: &[&str]) {
    for raw in cases {
        let answer = raw_exchange(&s.client, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), status, "{raw:?} got:\n{answer}");
    }
    assert!(s.up.seen().is_empty(), "forwarded: {:?}", s.up.seen());
    assert!(s.b.seen().is_empty(), "forwarded: {:?}", s.b.seen());
}

// === 1. upgrades ===

#[tokio::test]
async fn h2c_and_other_upgrades_never_become_tunnels() {
    let s = setup().await;
    assert_refused_raw(
        &s,
        400,
        &[
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: TLS/1.2\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
            "POST /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        ],
    )
    .await;

    // `Upgrade` without `Connection: upgrade` is only a hop-by-hop header: dropped, so the
    // upstream sees a plain GET; and an upstream that switches protocols unasked gets a 502,
    // never a tunnel.
    let answer = raw_exchange(
        &s.client,
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 502, "{answer}");
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("upgrade").is_none());
    assert!(seen[0].headers.get("http2-settings").is_none());
    s.gw.wait_for_log("upstream answered an upgrade").await;
}

#[tokio::test]
async fn websocket_tunnel_is_closed_when_its_certificate_is_revoked() {
    let s = setup().await;
    let mut tls = s.client.tls(&Proto::H1).await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_until_quiet(&mut tls).await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    assert_eq!(
        s.up.seen()[0].headers.get("upgrade").unwrap(),
        "websocket",
        "the upstream is asked for exactly a WebSocket upgrade"
    );
    tls.write_all(b"ping").await.unwrap();
    assert_eq!(read_until_quiet(&mut tls).await, "ping", "tunnel echoes");

    // An unrelated reload keeps the tunnel.
    let (status, _) = admin_post(s.gw.admin, "/reload").await;
    assert_eq!(status, 200);
    tls.write_all(b"still").await.unwrap();
    assert_eq!(read_until_quiet(&mut tls).await, "still");

    // Revoke the reader's certificate: the open tunnel is closed.
    s.pki.write(
        "ca.crl",
        &s.pki
            .root
            .crl(&[s.reader.serial()], Duration::from_secs(86400))
            .unwrap(),
    );
    let (status, body) = admin_post(s.gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tls.write_all(b"after").await;
        tls.read(&mut buf).await
    })
    .await
    .expect("the tunnel is closed, not left open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "tunnel still carried data after revocation: {read:?}"
    );
    s.gw.wait_for_log("its certificate is no longer accepted")
        .await;
}

// === 2-4. one authority ===

#[tokio::test]
async fn routing_and_the_upstream_see_one_canonical_authority() {
    let s = setup().await;
    let send = |host: &'static str, target: &'static str| {
        let client = s.client.clone();
        async move {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            status_of(&raw_exchange(&client, raw.as_bytes()).await)
        }
    };
    // A trailing dot, case and a port do not skip the host-bound route.
    assert_eq!(send("b.example.com.", "/x").await, 200);
    assert_eq!(send("B.Example.COM:8443", "/y").await, 200);
    let b_hosts: Vec<String> =
        s.b.seen()
            .iter()
            .map(|r| r.headers["host"].to_str().unwrap().to_string())
            .collect();
    assert_eq!(b_hosts, ["b.example.com", "b.example.com:8443"]);

    // Absolute-form: the target's authority routes and is the Host the upstream gets.
    assert_eq!(send("b.example.com", "http://a.example.com/svc").await, 200);
    let seen = s.up.seen();
    assert_eq!(
        seen.len(),
        1,
        "routed on a.example.com, not on the Host header"
    );
    assert_eq!(seen[0].headers["host"], "a.example.com");
    assert_eq!(seen[0].path_and_query, "/svc");
    assert_eq!(s.b.seen().len(), 2);
}

#[tokio::test]
async fn missing_repeated_and_malformed_hosts_are_400() {
    let s = setup().await;
    let mut cases = vec![
        "GET /x HTTP/1.1\r\nHost: b.example.com\r\nHost: a.example.com\r\n\r\n".to_string(),
        "GET /x HTTP/1.1\r\n\r\n".to_string(),
        "GET /x HTTP/1.1\r\nHost: b.example.com\r\nConnection: host\r\n\r\n".to_string(),
        "GET /x HTTP/1.1\r\nHost: b.example.com\r\nConnection: content-length\r\n\r\n".to_string(),
        "GET http://u@a.example.com/x HTTP/1.1\r\nHost: a.example.com\r\n\r\n".to_string(),
    ];
    for bad in [
        "user@b",
        "b/x",
        "b,a",
        "",
        ":abc",
        "b:99999",
        "b..example",
        "[::1",
    ] {
        cases.push(format!("GET /x HTTP/1.1\r\nHost: {bad}\r\n\r\n"));
    }
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    assert_refused_raw(&s, 400, &cases).await;
}

#[tokio::test]
async fn http2_authority_rules() {
    let s = setup().await;
    let mut h2 = s.client.h2().await.expect("h2");
    let mut send = async |req: http::Request<TestBody>| {
        read_reply(h2.send_request(req).await.expect("response"))
            .await
            .unwrap()
            .status
            .as_u16()
    };
    // :authority with a differing host header.
    let mismatch = http::Request::get("https://a.example.com/svc")
        .header("host", "b.example.com")
        .body(TestBody::empty())
        .unwrap();
    assert_eq!(send(mismatch).await, 400);
    // Neither :authority nor host.
    let none = http::Request::get("/svc").body(TestBody::empty()).unwrap();
    assert_eq!(send(none).await, 400);
    assert!(s.up.seen().is_empty() && s.b.seen().is_empty());
    // A trailing dot still reaches the host-bound route, with the canonical authority.
    let dotted = http::Request::get("https://b.example.com./svc")
        .body(TestBody::empty())
        .unwrap();
    assert_eq!(send(dotted).await, 200);
    assert_eq!(s.b.seen()[0].headers["host"], "b.example.com");
}

// === 5-7. bodies and framing ===

#[tokio::test]
async fn a_stalling_body_is_408_and_never_ejects_the_upstream() {
    // The upstream's timeout is shorter than the body timeout: the upstream's clock must not
    // run while the client is the one not sending.
    let s = setup_with(
        "request_body_timeout = \"500ms\"",
        "timeout = \"200ms\"\neject_after = 2\nretries = 0",
    )
    .await;
    for _ in 0..4 {
        let answer = raw_exchange(
            &s.client,
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc",
        )
        .await;
        assert_eq!(status_of(&answer), 408, "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    // Everyone else is still served: the endpoint was never ejected.
    let r = s.client.get("/fine").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    s.gw.assert_metric(
        r#"certgate_upstream_requests_total{outcome="client_error",upstream="up"}"#,
        4.0,
    )
    .await;
    s.gw.assert_metric(r#"certgate_upstream_ejections_total{upstream="up"}"#, 0.0)
        .await;
    s.gw.assert_metric(
        r#"certgate_upstream_requests_total{outcome="timeout",upstream="up"}"#,
        0.0,
    )
    .await;

    // A slow but steady body is fine: the timeout is between chunks, not for the whole body.
    let mut tls = s.client.tls(&Proto::H1).await.unwrap();
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    for b in b"hello" {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tls.write_all(&[*b]).await.unwrap();
    }
    let answer = read_until_quiet(&mut tls).await;
    assert_eq!(status_of(&answer), 200, "{answer}");

    // A slow upstream is still the upstream's fault.
    let r = s.client.get("/slow").await.unwrap();
    assert_eq!(r.status, 504);
}

#[tokio::test]
async fn malformed_chunked_bodies_are_client_errors() {
    let s = setup().await;
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n", // bad chunk size
        "3\r\nabcXY0\r\n\r\n",    // missing CRLF after the chunk
        "3\nabc\n0\n\n",          // bare LF
        "ffffffffffffffffff\r\n", // chunk size overflow
    ] {
        let raw = format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let answer = raw_exchange(&s.client, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{body:?}: {answer}");
    }
    s.gw.assert_metric(
        r#"certgate_upstream_requests_total{outcome="error",upstream="up"}"#,
        0.0,
    )
    .await;
    s.gw.assert_metric(r#"certgate_upstream_ejections_total{upstream="up"}"#, 0.0)
        .await;
}

#[tokio::test]
async fn framing_and_method_tricks_are_refused() {
    let s = setup().await;
    assert_refused_raw(
        &s,
        400,
        &[
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: x, chunked\r\n\r\n0\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // Methods are case-sensitive: `get` is not the GET that /readonly allows, and must
            // not fall through to the catch-all either.
            "get /readonly HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "Get /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ],
    )
    .await;
    assert_refused_raw(
        &s,
        405,
        &[
            "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
            "TRACE /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ],
    )
    .await;
    // 2^64-1 is refused by hyper's parser before certgate sees the request: 431 is hyper's
    // answer (DecodedLength::checked_new -> Parse::TooLarge; README, Security), pinned here so
    // the day hyper answers 400 this test says so. Never forwarded.
    let answer = raw_exchange(
        &s.client,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551615\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    assert!(s.up.seen().is_empty());

    // A leading-zero length is forwarded in canonical form.
    let answer = raw_exchange(
        &s.client,
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 05\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(s.up.seen()[0].headers["content-length"], "5");
}

#[tokio::test]
async fn declared_oversized_body_gets_a_readable_413() {
    let s = setup().await;
    // Like python-requests: send the whole (4 MiB) body, then read the answer.
    let mut tls = s.client.tls(&Proto::H1).await.unwrap();
    tls.write_all(b"POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4194304\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'x'; 65536];
    for _ in 0..64 {
        tls.write_all(&chunk)
            .await
            .expect("the body is taken, not reset");
    }
    let answer = read_until_quiet(&mut tls).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("payload_too_large"));
    assert!(s.up.seen().is_empty());

    // curl sees the 413 too.
    let body = s.pki.write("big.bin", &"y".repeat(4 << 20));
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--http1.1"])
        .arg("--cacert")
        .arg(s.pki.path("ca.pem"))
        .arg("--cert")
        .arg(s.pki.path("reader.pem"))
        .arg("--key")
        .arg(s.pki.path("reader-key.pem"))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("https://localhost:{}/small", s.gw.addr.port()))
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", s.gw.addr.port()))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "413",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// === 8-10. sanitising ===

#[tokio::test]
async fn identity_forwarding_and_override_headers_of_every_family_are_dropped() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.write(
        "ca.crl",
        &pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    let up = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start_with_listener(
        &pki,
        "strip_request_headers = [\"X-Internal-User\"]",
        &config(&up.url(), &b.url(), ""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let spoofed = [
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
        "x-ssl-cert",
        "x-ssl-client-cert",
        "x-ssl-client-s-dn",
        "x-client-s-dn",
        "x-client-cert",
        "x-arr-clientcert",
        "x-amzn-mtls-clientcert",
        "x-remote-user",
        "x-spiffe-id",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-certgate-identity",
        "x-token-subject",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x_forwarded_client_cert",
        "ssl_client_cert",
        "x-internal-user",
        // The attack run's families (issue 30): path overrides, users and impersonation,
        // client IPs, Envoy's own.
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-original-method",
        "impersonate-user",
        "impersonate-group",
        "x-authenticated-user",
        "x-auth-request-email",
        "x-webauth-user",
        "x-ms-client-principal",
        "x-goog-authenticated-user-id",
        "x-amzn-oidc-data",
        "cf-access-jwt-assertion",
        "x-consumer-id",
        "x-user-id",
        "x-username",
        "x-principal",
        "x-proxy-user",
        "x-tls-client-cert",
        "x-mtls-client-cert",
        "authorization-client-cert",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-envoy-internal",
    ];
    let mut req = http::Request::get("/readonly/x").header("host", "localhost");
    for name in spoofed {
        req = req.header(name, "spiffe://example.org/ns/test/sa/admin");
    }
    let r = client
        .send(req.body(TestBody::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = &up.seen()[0];
    for name in spoofed {
        match name {
            "x-forwarded-client-cert" => assert!(
                seen.headers[name]
                    .to_str()
                    .unwrap()
                    .contains(&format!("URI={}", spiffe("reader"))),
                "XFCC is certgate's own"
            ),
            _ => assert!(seen.headers.get(name).is_none(), "{name} was forwarded"),
        }
    }
    assert_eq!(seen.method, "GET", "no override reaches the upstream");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn path_parameters_are_refused_unless_the_route_allows_them() {
    let s = setup().await;
    let admin = TlsClient::new(&s.pki, s.gw.addr, Some("admin"));
    for (client, path) in [
        (&s.client, "/admin;x=1"),
        (&s.client, "/public/..;/admin"),
        (&s.client, "/java/..;/admin"),
        (&admin, "/admin;jsessionid=1"),
        (&s.client, "/x;y"),
    ] {
        let r = client.get(path).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(s.up.seen().is_empty());
    // A route that allows them matches without them and forwards them untouched.
    let r = s.client.get("/java/a;jsessionid=1/b").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.up.seen()[0].path_and_query, "/java/a;jsessionid=1/b");
}
