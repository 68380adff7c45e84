//! Per-route authorisation: 403 / 404 / 401 answers and what reaches the upstream.

use crate::common::*;

fn routes(up: &Upstream) -> String {
    format!(
        r#"{}
[[routes]]
name = "payments-read"
path_prefix = "/payments"
methods = ["GET", "HEAD"]
upstream = "up"
allow = [
  {{ uri = "{reader}" }},
  {{ cn = "reporting-batch", ou = "finance" }},
]
deny = [{{ cn = "banned" }}]

[[routes]]
name = "public"
path_prefix = "/public"
upstream = "up"
allow_unauthenticated = true

[[routes]]
name = "api-host"
host = "api.example.com"
path_prefix = "/api"
upstream = "up"
allow = [{{ any = true }}]
"#,
        upstream_section("up", &up.url(), ""),
        reader = spiffe("reader"),
    )
}

async fn setup(mode: &str) -> (Pki, Upstream, Gateway) {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "writer", workload("writer"));
    pki.client(
        &pki.root,
        "batch",
        certgate_testpki::LeafSpec {
            ou: Some("finance".into()),
            ..certgate_testpki::LeafSpec::client("reporting-batch")
        },
    );
    // Allowed by its URI, but also carries a denied CN: deny wins.
    pki.client(
        &pki.root,
        "banned",
        certgate_testpki::LeafSpec {
            uris: vec![spiffe("reader")],
            ..certgate_testpki::LeafSpec::client("banned")
        },
    );
    let gw = Gateway::start(&pki, &format!("{}{}", client_auth(mode, ""), routes(&up))).await;
    (pki, up, gw)
}

fn assert_error_body(r: &Reply, code: &str) {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
    assert_eq!(v["error"], code);
    let id = v["request_id"].as_str().expect("request_id");
    assert_eq!(r.headers.get("x-request-id").unwrap(), id);
    let text = r.text();
    for secret in [
        "payments-read",
        "reader",
        "banned",
        "allow",
        "deny[",
        "spiffe",
    ] {
        assert!(
            !text.contains(secret),
            "error body leaks {secret:?}: {text}"
        );
    }
}

#[tokio::test]
async fn allowed_denied_and_unrouted() {
    let (pki, up, gw) = setup("require").await;
    let get = |name: &str, path: &str| {
        let c = TlsClient::new(&pki, gw.addr, Some(name));
        let path = path.to_string();
        async move { c.get(&path).await.expect("request") }
    };
    assert_eq!(get("reader", "/payments/1").await.status, 200);
    assert_eq!(get("batch", "/payments").await.status, 200);

    let wrong = get("writer", "/payments/1").await;
    assert_eq!(wrong.status, 403);
    assert_error_body(&wrong, "forbidden");

    let banned = get("banned", "/payments/1").await;
    assert_eq!(banned.status, 403, "deny entry beats allow");

    let post = TlsClient::new(&pki, gw.addr, Some("reader"))
        .send(
            http::Request::post("/payments/1")
                .header("host", "localhost")
                .body(TestBody::bytes("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(post.status, 404, "method not routed");

    let none = get("reader", "/paymentsX").await;
    assert_eq!(none.status, 404, "prefix is segment-aware");
    assert_error_body(&none, "not_found");

    // Host-specific route.
    let c = TlsClient::new(&pki, gw.addr, Some("writer"));
    let on_host = c
        .send(
            http::Request::get("/api/v1")
                .header("host", "API.example.com:8443")
                .body(TestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(on_host.status, 200);
    assert_eq!(c.get("/api/v1").await.unwrap().status, 404, "other host");

    let paths: Vec<String> = up.seen().into_iter().map(|s| s.path_and_query).collect();
    assert_eq!(
        paths,
        ["/payments/1", "/payments", "/api/v1"],
        "only allowed requests reach the upstream"
    );

    gw.assert_metric(
        r#"certgate_authz_decisions_total{decision="allow",route="payments-read"}"#,
        2.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_authz_decisions_total{decision="deny",route="payments-read"}"#,
        2.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_requests_total{code="403",method="GET",route="payments-read"}"#,
        2.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_requests_total{code="404",method="POST",route="_none"}"#,
        1.0,
    )
    .await;
    gw.wait_for_log("\"rule\":\"deny[0]\"").await; // the deciding rule is logged
}

#[tokio::test]
async fn optional_mode_without_certificate() {
    let (pki, up, gw) = setup("optional").await;
    let anon = TlsClient::new(&pki, gw.addr, None);
    let r = anon.get("/payments/1").await.expect("anonymous request");
    assert_eq!(r.status, 401);
    assert_error_body(&r, "unauthenticated");
    let r = anon.get("/public/info").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        up.seen()[0]
            .headers
            .get("x-forwarded-client-cert")
            .is_none(),
        "no identity header for anonymous clients"
    );
    let r = TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/payments/1")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // A spoofed identity header from an anonymous client is stripped too.
    let r = anon
        .send(
            http::Request::get("/public/x")
                .header("host", "localhost")
                .header(
                    "x-forwarded-client-cert",
                    "Hash=00;URI=spiffe://example.org/ns/test/sa/reader",
                )
                .body(TestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        up.seen()
            .last()
            .unwrap()
            .headers
            .get("x-forwarded-client-cert")
            .is_none()
    );
    gw.assert_metric(r#"certgate_tls_handshakes_total{result="ok"}"#, 4.0)
        .await;
}

#[tokio::test]
async fn ambiguous_certificates_do_not_match_what_they_only_partly_are() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    openssl_client(&pki, "two-cns", "/CN=reader/CN=admin", "", None);
    openssl_client(
        &pki,
        "wild",
        "/CN=wild",
        "subjectAltName=DNS:*.example.com",
        None,
    );
    openssl_client(
        &pki,
        "dotted",
        "/CN=dotted",
        "subjectAltName=URI:spiffe://example.org/ns/../admin",
        None,
    );
    pki.client(&pki.root, "plain", workload("plain"));
    let body = format!(
        "{}{}
[[routes]]
name = \"admin\"
path_prefix = \"/admin\"
upstream = \"up\"
allow = [{{ cn = \"admin\" }}]

[[routes]]
name = \"no-admins\"
path_prefix = \"/open\"
upstream = \"up\"
allow = [{{ any = true }}]
deny = [{{ cn = \"admin\" }}]

[[routes]]
name = \"wild\"
path_prefix = \"/wild\"
upstream = \"up\"
allow = [{{ dns = \"*.example.com\" }}]

[[routes]]
name = \"ns\"
path_prefix = \"/ns\"
upstream = \"up\"
allow = [{{ uri = \"spiffe://example.org/ns/*\" }}]
",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    );
    let gw = Gateway::start(&pki, &body).await;
    let get = |who: &'static str, path: &'static str| {
        let client = TlsClient::new(&pki, gw.addr, Some(who));
        async move { client.get(path).await.expect("answer").status }
    };
    assert_eq!(
        get("two-cns", "/admin").await,
        403,
        "CN=reader,CN=admin is not just admin"
    );
    assert_eq!(
        get("two-cns", "/open").await,
        403,
        "…and a deny on admin catches it"
    );
    assert_eq!(get("plain", "/open").await, 200);
    assert_eq!(
        get("wild", "/wild").await,
        403,
        "a wildcard certificate name"
    );
    assert_eq!(
        get("dotted", "/ns").await,
        403,
        "a dot segment below the wildcard"
    );
    assert_eq!(
        get("plain", "/ns").await,
        200,
        "a clean SPIFFE ID below the wildcard"
    );
}
