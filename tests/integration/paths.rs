//! Path tricks cannot escape a route's prefix, and the upstream gets exactly the authorised path.

use crate::common::*;

async fn setup() -> (Pki, Upstream, Gateway) {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let body = format!(
        r#"{}{}
[[routes]]
name = "public"
path_prefix = "/public"
upstream = "up"
allow = [{{ any = true }}]

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "up"
allow = [{{ cn = "root-admin" }}]
"#,
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    );
    let gw = Gateway::start(&pki, &body).await;
    (pki, up, gw)
}

/// (raw path, expected status, path the upstream must see if forwarded)
const CASES: &[(&str, u16, Option<&str>)] = &[
    ("/public/../admin", 403, None),
    ("/public/%2e%2e/admin", 403, None),
    ("/public/%2E%2E/admin", 403, None),
    ("/public/..%2fadmin", 400, None),
    ("/public/..%2Fadmin", 400, None),
    ("//admin", 403, None),
    ("/public%2fadmin", 400, None),
    ("/public%5cadmin", 400, None),
    ("/public/%00", 400, None),
    ("/public/%zz", 400, None),
    ("/public/../../etc/passwd", 400, None),
    ("/public/./a//b/", 200, Some("/public/a/b/")),
    ("/public/a/../b", 200, Some("/public/b")),
    (
        "/public/%7euser?q=%2e%2e/..",
        200,
        Some("/public/~user?q=%2e%2e/.."),
    ),
    ("/%70ublic/x", 200, Some("/public/x")),
    ("/publicity", 404, None),
];

#[tokio::test]
async fn path_tricks_over_http1() {
    let (pki, up, gw) = setup().await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    for (raw, status, _) in CASES {
        let r = client
            .get(raw)
            .await
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(r.status.as_u16(), *status, "{raw}: {}", r.text());
    }
    let seen: Vec<String> = up.seen().into_iter().map(|s| s.path_and_query).collect();
    let expected: Vec<&str> = CASES.iter().filter_map(|c| c.2).collect();
    assert_eq!(
        seen, expected,
        "the upstream sees exactly the normalised, authorised paths"
    );
}

#[tokio::test]
async fn path_tricks_over_http2() {
    let (pki, up, gw) = setup().await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut h2 = client.h2().await.expect("h2");
    for (raw, status, _) in CASES {
        let req = http::Request::get(format!("https://localhost{raw}"))
            .body(TestBody::empty())
            .unwrap();
        let r = read_reply(
            h2.send_request(req)
                .await
                .unwrap_or_else(|e| panic!("{raw}: {e}")),
        )
        .await
        .unwrap();
        assert_eq!(r.status.as_u16(), *status, "{raw}: {}", r.text());
    }
    let seen: Vec<String> = up.seen().into_iter().map(|s| s.path_and_query).collect();
    let expected: Vec<&str> = CASES.iter().filter_map(|c| c.2).collect();
    assert_eq!(seen, expected);
}
