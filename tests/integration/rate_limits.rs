//! Per-route rate limits (GCRA): 429 with Retry-After and RateLimit headers, keys, reloads.

use std::time::Duration;

use crate::common::*;

fn config(up: &str, limit: &str) -> String {
    format!(
        r#"{}{}
[[routes]]
name = "limited"
path_prefix = "/limited"
upstream = "up"
allow = [{{ any = true }}]
rate_limit = {limit}

[[routes]]
name = "free"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
    )
}

async fn status(client: &TlsClient, path: &str) -> Reply {
    client.get(path).await.expect("exchange")
}

#[tokio::test]
async fn burst_then_429_with_headers_then_recovery_and_identities_are_independent() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    pki.client(&pki.root, "b", workload("b"));
    let gw = Gateway::start(
        &pki,
        &config(
            &up.url(),
            r#"{ requests = 1, per = "1s", burst = 3, key = "identity" }"#,
        ),
    )
    .await;
    let a = TlsClient::new(&pki, gw.addr, Some("a"));
    let b = TlsClient::new(&pki, gw.addr, Some("b"));
    for i in 0..3 {
        assert_eq!(
            status(&a, "/limited").await.status,
            200,
            "burst request {i}"
        );
    }
    let r = status(&a, "/limited").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert_eq!(
        r.headers.get("ratelimit-policy").unwrap(),
        "\"rate\";q=1;w=1"
    );
    assert_eq!(r.headers.get("ratelimit").unwrap(), "\"rate\";r=0;t=1");
    assert!(r.text().contains("\"too_many_requests\""), "{}", r.text());
    assert!(
        !r.text().contains("limited"),
        "the body does not name the route"
    );
    // Other routes and other identities are not affected.
    assert_eq!(status(&a, "/other").await.status, 200);
    assert_eq!(status(&b, "/limited").await.status, 200);
    // gRPC clients get RESOURCE_EXHAUSTED.
    let grpc = http::Request::post("/limited/svc/M")
        .header("host", "localhost")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(TestBody::empty())
        .unwrap();
    let r = a.send(grpc).await.unwrap();
    assert_eq!(r.headers.get("grpc-status").unwrap(), "8");
    // After Retry-After, one more.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&a, "/limited").await.status, 200);
    assert_eq!(status(&a, "/limited").await.status, 429);
    gw.assert_metric(
        "certgate_rate_limited_total{kind=\"rate\",route=\"limited\"}",
        3.0,
    )
    .await;
    assert_eq!(
        up.seen()
            .iter()
            .filter(|s| s.path_and_query.starts_with("/limited"))
            .count(),
        5
    );
    gw.wait_for_log("\"limit\":\"rate\"").await;
    gw.wait_for_log("\"limit_remaining\":").await;
}

#[tokio::test]
async fn route_key_is_shared_and_source_ip_key_counts_per_address() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    pki.client(&pki.root, "b", workload("b"));
    let gw = Gateway::start(
        &pki,
        &config(
            &up.url(),
            r#"{ requests = 1, per = "1m", burst = 2, key = "route" }"#,
        ),
    )
    .await;
    let a = TlsClient::new(&pki, gw.addr, Some("a"));
    let b = TlsClient::new(&pki, gw.addr, Some("b"));
    assert_eq!(status(&a, "/limited").await.status, 200);
    assert_eq!(status(&b, "/limited").await.status, 200);
    assert_eq!(
        status(&a, "/limited").await.status,
        429,
        "one budget for the route"
    );
    assert_eq!(status(&b, "/limited").await.status, 429);
    drop(gw);

    let gw = Gateway::start(
        &pki,
        &config(
            &up.url(),
            r#"{ requests = 1, per = "1m", burst = 2, key = "source_ip" }"#,
        ),
    )
    .await;
    // One certificate from two addresses: two budgets; two certificates from one: one.
    let a2 = TlsClient::new(&pki, gw.addr, Some("a")).with_source("127.0.0.2");
    let a3 = TlsClient::new(&pki, gw.addr, Some("a")).with_source("127.0.0.3");
    let b2 = TlsClient::new(&pki, gw.addr, Some("b")).with_source("127.0.0.2");
    assert_eq!(status(&a2, "/limited").await.status, 200);
    assert_eq!(status(&b2, "/limited").await.status, 200);
    assert_eq!(status(&a2, "/limited").await.status, 429);
    assert_eq!(status(&b2, "/limited").await.status, 429);
    assert_eq!(status(&a3, "/limited").await.status, 200);
    assert_eq!(status(&a3, "/limited").await.status, 200);
    assert_eq!(status(&a3, "/limited").await.status, 429);
}

#[tokio::test]
async fn counters_survive_a_reload_that_keeps_the_limit_and_reset_when_it_changes() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    let gw = Gateway::start(
        &pki,
        &config(&up.url(), r#"{ requests = 1, per = "1h", burst = 2 }"#),
    )
    .await;
    let a = TlsClient::new(&pki, gw.addr, Some("a"));
    assert_eq!(status(&a, "/limited").await.status, 200);
    assert_eq!(status(&a, "/limited").await.status, 200);
    assert_eq!(status(&a, "/limited").await.status, 429);
    // A reload that changes something else (a new route) keeps the spent budget.
    let path = pki.path("certgate.toml");
    let running = std::fs::read_to_string(&path).unwrap();
    let more = format!(
        "{running}\n[[routes]]\nname = \"extra\"\npath_prefix = \"/extra\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n"
    );
    std::fs::write(&path, &more).unwrap();
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        status(&a, "/extra").await.status,
        200,
        "the new config is live"
    );
    assert_eq!(
        status(&a, "/limited").await.status,
        429,
        "the counters survived the reload"
    );
    // Changing the limit starts it afresh.
    std::fs::write(&path, more.replace("burst = 2", "burst = 3")).unwrap();
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&a, "/limited").await.status, 200);
}

#[test]
fn check_refuses_malformed_limits_and_shows_good_ones() {
    let pki = Pki::new();
    let write = |limit: &str| {
        pki.write(
            "certgate.toml",
            &format!(
                "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{}",
                config("http://127.0.0.1:1", limit)
            ),
        )
    };
    let check = |p: &std::path::Path| run_cli(&["check", "--config", p.to_str().unwrap()]);
    let (code, out, err) = check(&write(
        r#"{ requests = 100, per = "1s", burst = 200, key = "identity" }"#,
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rate 100/1s burst 200 per identity"), "{out}");
    for (limit, needle) in [
        (
            r#"{ requests = 0, per = "1s" }"#,
            "routes[0].rate_limit.requests",
        ),
        (
            r#"{ requests = 1, per = "0s" }"#,
            "routes[0].rate_limit.per",
        ),
        (
            r#"{ requests = 1, per = "1s", burst = 0 }"#,
            "routes[0].rate_limit.burst",
        ),
        (
            r#"{ requests = 1, per = "1s", key = "cookie" }"#,
            "unknown variant `cookie`",
        ),
        (r#"{ requests = 1 }"#, "missing field `per`"),
    ] {
        let (code, out, err) = check(&write(limit));
        assert_ne!(code, 0, "{limit}");
        assert!(
            format!("{out}{err}").contains(needle),
            "{needle}: {out}{err}"
        );
    }
}

#[tokio::test]
async fn quotas_in_bytes_and_requests_the_crossing_response_completes() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    pki.client(&pki.root, "b", workload("b"));
    let body = format!(
        r#"{}{}
[[routes]]
name = "bulk"
path_prefix = "/download"
upstream = "up"
allow = [{{ any = true }}]
quota = {{ bytes = "100KiB", per = "1h" }}

[[routes]]
name = "counted"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
quota = {{ requests = 2, per = "1h", key = "identity" }}
"#,
        client_auth("require", ""),
        upstream_section("up", &up.url(), ""),
    );
    let gw = Gateway::start(&pki, &body).await;
    let a = TlsClient::new(&pki, gw.addr, Some("a"));
    let b = TlsClient::new(&pki, gw.addr, Some("b"));
    // 64 KiB, then 64 KiB more crosses 100 KiB and still arrives whole; then refused.
    let first = status(&a, "/download/1").await;
    assert_eq!((first.status.as_u16(), first.body.len()), (200, 65536));
    let crossing = status(&a, "/download/1").await;
    assert_eq!(
        (crossing.status.as_u16(), crossing.body.len()),
        (200, 65536),
        "not cut"
    );
    let r = status(&a, "/download/1").await;
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&retry),
        "until the window ends: {retry}"
    );
    assert_eq!(
        r.headers.get("ratelimit-policy").unwrap(),
        "\"quota\";q=102400;w=3600"
    );
    assert!(
        r.headers
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("\"quota\";r=0;t=")
    );
    assert_eq!(
        status(&b, "/download/1").await.status,
        200,
        "b has its own quota"
    );

    assert_eq!(status(&a, "/x").await.status, 200);
    assert_eq!(status(&a, "/y").await.status, 200);
    assert_eq!(status(&a, "/z").await.status, 429, "2 requests per hour");
    gw.assert_metric(
        "certgate_rate_limited_total{kind=\"quota\",route=\"bulk\"}",
        1.0,
    )
    .await;
    gw.assert_metric(
        "certgate_rate_limited_total{kind=\"quota\",route=\"counted\"}",
        1.0,
    )
    .await;
    let pki_config = pki.path("certgate.toml");
    let (code, out, _) = run_cli(&["check", "--config", pki_config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("quota 100.0 KiB per 1h per identity"), "{out}");
}

#[tokio::test]
async fn audit_routes_forward_what_enforce_refuses_and_shadow_policies_are_only_recorded() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "stranger", workload("stranger"));
    let body = format!(
        r#"{}{}
[[routes]]
name = "audited"
path_prefix = "/audited"
upstream = "up"
enforcement = "audit"
allow = [{{ uri = "{}" }}]
rate_limit = {{ requests = 1, per = "1h", burst = 1 }}
shadow = {{ allow = [{{ uri = "{}" }}] }}

[[routes]]
name = "enforced"
path_prefix = "/"
upstream = "up"
allow = [{{ uri = "{}" }}]
shadow = {{ deny = [{{ uri = "{}" }}], allow = [{{ any = true }}] }}
"#,
        client_auth("require", ""),
        upstream_section("up", &up.url(), ""),
        spiffe("reader"),
        spiffe("stranger"),
        spiffe("reader"),
        spiffe("reader"),
    );
    let gw = Gateway::start(&pki, &body).await;
    let reader = TlsClient::new(&pki, gw.addr, Some("reader"));
    let stranger = TlsClient::new(&pki, gw.addr, Some("stranger"));
    // The stranger is not allowed on the audit route: forwarded, counted as would_deny.
    assert_eq!(status(&stranger, "/audited/1").await.status, 200);
    // Over the rate limit on the audit route: forwarded, counted as would_rate.
    assert_eq!(status(&reader, "/audited/2").await.status, 200);
    assert_eq!(status(&reader, "/audited/3").await.status, 200);
    assert_eq!(up.seen().len(), 3, "every request went upstream");
    gw.assert_metric(
        "certgate_authz_decisions_total{decision=\"would_deny\",route=\"audited\"}",
        1.0,
    )
    .await;
    gw.assert_metric(
        "certgate_rate_limited_total{kind=\"would_rate\",route=\"audited\"}",
        1.0,
    )
    .await;
    // Malformed requests are refused even on audit routes.
    let raw = raw_exchange(
        &stranger,
        b"GET /audited/%2e%2e/%2f HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 400, "{raw}");

    // Shadow: the enforced route's candidate policy denies reader and allows the stranger,
    // while the real policy does the opposite; only the real one is enforced.
    assert_eq!(status(&reader, "/x").await.status, 200);
    assert_eq!(status(&stranger, "/x").await.status, 403);
    gw.assert_metric(
        "certgate_shadow_decisions_total{decision=\"deny\",route=\"enforced\"}",
        1.0,
    )
    .await;
    gw.assert_metric(
        "certgate_shadow_decisions_total{decision=\"allow\",route=\"enforced\"}",
        1.0,
    )
    .await;
    gw.wait_for_log("\"would\":\"policy\"").await;
    gw.wait_for_log("\"would\":\"rate\"").await;
    let logs = gw.logs();
    assert!(logs.contains("\"would\":\"policy\""), "{logs}");
    assert!(logs.contains("\"would\":\"rate\""));
    assert!(logs.contains("\"decision\":\"would_deny\""));
    let limited = logs
        .lines()
        .find(|l| l.contains("\"would\":\"rate\""))
        .unwrap();
    assert!(
        limited.contains("\"decision\":\"would_limit\""),
        "{limited}"
    );
    assert!(logs.contains("\"shadow_decision\":\"deny\""));
}
