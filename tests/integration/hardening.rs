//! Hardening round 3 (issue 30): what an attack run still got through, each with the test that
//! would have caught it.

use crate::common::*;

/// An inventory file as the gateway writes it, with one record whose subject and owner carry
/// terminal escapes, a forged CSV row and a spreadsheet formula.
fn hostile_inventory() -> String {
    let now = certgate::util::time::unix_now();
    serde_json::json!({
        "version": 1,
        "identities": [{
            "sha256": "ab".repeat(32),
            "subject": "CN=evil\u{1b}]0;owned\u{7}\u{1b}[2J\r\nforged,row,active",
            "issuer": "CN=Test Root CA",
            "serial": "01",
            "not_before": now - 3600,
            "not_after": now + 86400 * 30,
            "first_seen": now - 60,
            "last_seen": now,
            "requests_allowed": 1,
            "requests_denied": 0,
            "routes": ["api"],
            "owner": "=HYPERLINK(\"http://attacker.test\",\"click\")",
        }]
    })
    .to_string()
}

#[test]
fn reports_print_no_control_characters_and_no_spreadsheet_formulas() {
    let pki = Pki::new();
    pki.write("inventory.json", &hostile_inventory());
    let config = write_check_config(
        &pki,
        &format!(
            "[inventory]\npath = \"inventory.json\"\n{}{}\n{}",
            client_auth("require", ""),
            upstream_section("up", "http://127.0.0.1:9", ""),
            route_all("")
        ),
    );
    for format in ["table", "csv"] {
        let (code, out, err) = run_cli(&[
            "inventory",
            "--config",
            config.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{format}: raw control characters: {out:?}"
        );
        assert!(out.contains("\\x1B]0;owned\\x07"), "{format}: {out}");
        assert_eq!(
            out.lines().filter(|l| l.contains("forged")).count(),
            1,
            "{format}: no forged row: {out}"
        );
        if format == "csv" {
            let row = out.lines().nth(1).unwrap();
            assert!(row.contains(",\"'=HYPERLINK("), "formula defused: {row}");
        }
    }
}

/// Client certificates required, one catch-all route `api` to the upstream at `url`.
fn api_to(url: &str) -> String {
    format!(
        "{}{}\n{}",
        client_auth("require", ""),
        upstream_section("up", url, ""),
        route_all("")
    )
}

/// Sends `raw` to the (plain HTTP) admin listener and returns the status.
async fn admin_raw(admin: std::net::SocketAddr, raw: &str) -> u16 {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(raw.as_bytes()).await.unwrap();
    status_of(&read_until_quiet(&mut tcp).await)
}

#[tokio::test]
async fn the_admin_listener_refuses_other_origins_two_hosts_and_a_foreign_absolute_target() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &api_to(&up.url())).await;
    let post = |headers: &'static [(&'static str, &'static str)]| {
        admin_request_with(gw.admin, http::Method::POST, "/reload", headers)
    };
    // A web page's script: its own origin, or "null" from a sandboxed frame or a file.
    for origin in [
        "http://evil.test",
        "null",
        "https://127.0.0.1",
        "http://localhost:1",
    ] {
        let (status, _) = admin_request_with(
            gw.admin,
            http::Method::POST,
            "/reload",
            &[("host", "127.0.0.1"), ("origin", origin)],
        )
        .await
        .unwrap();
        assert_eq!(status, 403, "{origin}");
    }
    gw.assert_metric("certgate_config_reloads_total{result=\"ok\"}", 0.0)
        .await;
    // The listener's own origin (a page it served) and no Origin at all (curl) reload.
    let own = format!("http://127.0.0.1:{}", gw.admin.port());
    let (status, _) = admin_request_with(
        gw.admin,
        http::Method::POST,
        "/reload",
        &[("host", "127.0.0.1"), ("origin", own.as_str())],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(post(&[("host", "127.0.0.1")]).await.unwrap().0, 200);
    // Two Host headers, and an absolute-form target naming another host.
    let port = gw.admin.port();
    assert_eq!(
        admin_raw(
            gw.admin,
            &format!("POST /reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.test\r\nContent-Length: 0\r\n\r\n")
        )
        .await,
        400
    );
    assert_eq!(
        admin_raw(
            gw.admin,
            &format!("POST http://evil.test/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")
        )
        .await,
        403
    );
    gw.assert_metric("certgate_config_reloads_total{result=\"ok\"}", 2.0)
        .await;
}

#[tokio::test]
async fn an_http2_request_with_two_content_lengths_is_refused() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &api_to(&up.url())).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut h2 = client.h2().await.unwrap();
    let two = http::Request::post("https://localhost/x")
        .header("content-length", "5")
        .header("content-length", "5")
        .body(TestBody::bytes("hello"))
        .unwrap();
    let r = h2.send_request(two).await.expect("an answer");
    assert_eq!(r.status(), 400);
    let one = http::Request::post("https://localhost/x")
        .header("content-length", "5")
        .body(TestBody::bytes("hello"))
        .unwrap();
    assert_eq!(h2.send_request(one).await.unwrap().status(), 200);
    assert_eq!(
        up.seen().len(),
        1,
        "only the well-framed request is forwarded"
    );
}

#[test]
fn check_warns_that_deny_does_not_hold_on_a_route_open_without_a_certificate() {
    let pki = Pki::new();
    let check = |route: &str| {
        let config = write_check_config(
            &pki,
            &format!(
                "{}{}\n{}",
                client_auth("optional", ""),
                upstream_section("up", "http://127.0.0.1:9", ""),
                route_all(&format!("allow_unauthenticated = true\n{route}"))
            ),
        );
        run_cli(&["check", "--config", config.to_str().unwrap()])
    };
    let (code, out, err) = check("deny = [{ cn = \"banned\" }]");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("routes[0] (\"api\") sets allow_unauthenticated and deny: a denied client gets in anyway"),
        "{out}"
    );
    let (_, out, _) = check("");
    assert!(!out.contains("gets in anyway"), "{out}");
}

#[test]
fn check_warns_that_allow_on_backend_error_lets_a_flood_through() {
    let pki = Pki::new();
    let check = |policy: &str| {
        let config = write_check_config(
            &pki,
            &format!(
                "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:9/0\"\non_backend_error = \"{policy}\"\n{}{}\n{}",
                client_auth("require", ""),
                upstream_section("up", "http://127.0.0.1:9", ""),
                route_all("rate_limit = { requests = 5, per = \"1m\" }")
            ),
        );
        run_cli(&["check", "--config", config.to_str().unwrap()])
    };
    let (code, out, err) = check("allow");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "on_backend_error = \"allow\": while Redis is slow or down every request is allowed"
        ),
        "{out}"
    );
    let (_, out, _) = check("local");
    assert!(!out.contains("every request is allowed"), "{out}");
}
