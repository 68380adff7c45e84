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

/// A gateway with `/admin` for one certificate and a catch-all for everyone, `[listener]` extra
/// keys as given: what the attack run used, where any path a broader route decides reaches
/// the upstream.
async fn with_catch_all(listener: &str) -> (Pki, Upstream, Gateway) {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let body = format!(
        "{}{}\n[[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = \"up\"\nallow = [{{ cn = \"root-admin\" }}]\n\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    );
    let gw = Gateway::start_with_listener(&pki, listener, &body).await;
    (pki, up, gw)
}

#[tokio::test]
async fn escaped_parameters_overlong_utf8_and_trailing_dots_never_reach_a_broader_route() {
    let (pki, up, gw) = with_catch_all("").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    for raw in [
        "/public/..%3B/admin",
        "/admin%3bx",
        "/admin%3Bx",
        "/public/%c0%ae%c0%ae/admin",
        "/%c0%afadmin",
        "/admin.",
        "/admin%2e",
        "/admin%2E",
        "/admin%20",
        "/admin%09",
        "/admin./x",
    ] {
        let r = client
            .get(raw)
            .await
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(r.status.as_u16(), 400, "{raw}: {}", r.text());
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    // Case-sensitive (the default): /ADMIN is another path, for the catch-all.
    assert_eq!(client.get("/ADMIN").await.unwrap().status, 200);
}

#[tokio::test]
async fn with_path_case_insensitive_routes_match_whatever_the_case() {
    let (pki, up, gw) = with_catch_all("path_case = \"insensitive\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    for raw in ["/ADMIN", "/Admin/x", "/aDmIn%2Fx", "/admin"] {
        let r = client.get(raw).await.unwrap();
        assert!(
            matches!(r.status.as_u16(), 403 | 400),
            "{raw}: decided by /admin, not the catch-all: {}",
            r.status
        );
    }
    assert_eq!(client.get("/Public/X").await.unwrap().status, 200);
    let seen: Vec<String> = up.seen().into_iter().map(|s| s.path_and_query).collect();
    assert_eq!(seen, ["/Public/X"], "forwarded as sent");
}
