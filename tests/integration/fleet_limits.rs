//! Fleet-wide rate limits on a real Redis: gateways share one budget; a slow, stopped or
//! unreachable Redis never stalls a request (on_backend_error answers); it recovers by itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::services::RedisServer;

/// The config of one gateway of the fleet, written to `name`.toml in the PKI directory.
fn write_config(
    pki: &Pki,
    name: &str,
    up: &str,
    limits: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let body = format!(
        r#"[limits]
{limits}

{}{}
[[routes]]
name = "limited"
path_prefix = "/limited"
upstream = "up"
allow = [{{ any = true }}]
rate_limit = {{ requests = 1, per = "1h", burst = 4, key = "identity" }}
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
    );
    write_named_config(pki, name, &body)
}

async fn launch(pki: &Pki, name: &str, up: &str, limits: &str) -> Gateway {
    let (path, addr, admin) = write_config(pki, name, up, limits);
    Gateway::launch(&path, addr, admin).await
}

fn redis_limits(url: &str, on_error: &str) -> String {
    format!(
        "backend = \"redis\"\nredis_url = \"{url}\"\non_backend_error = \"{on_error}\"\nbackend_timeout = \"100ms\""
    )
}

/// Status and how long the answer took.
async fn timed(c: &TlsClient) -> (u16, Duration) {
    let t = Instant::now();
    let r = c.get("/limited").await.expect("exchange");
    (r.status.as_u16(), t.elapsed())
}

async fn statuses(c: &TlsClient, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(timed(c).await.0);
    }
    out
}

#[tokio::test]
async fn two_gateways_share_one_budget_survive_a_hung_and_a_dead_redis_and_share_again() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    for name in ["a", "b", "c"] {
        pki.client(&pki.root, name, workload(name));
    }
    let mut redis = RedisServer::start().await;
    let limits = redis_limits(&redis.url(), "local");
    let g1 = launch(&pki, "gw1", &up.url(), &limits).await;
    let g2 = launch(&pki, "gw2", &up.url(), &limits).await;
    for g in [&g1, &g2] {
        g.wait_for_log("counters are shared").await;
    }
    // Burst 4 for the fleet: two through each gateway, then both refuse.
    let a1 = TlsClient::new(&pki, g1.addr, Some("a"));
    let a2 = TlsClient::new(&pki, g2.addr, Some("a"));
    assert_eq!(statuses(&a1, 2).await, [200, 200]);
    assert_eq!(statuses(&a2, 2).await, [200, 200]);
    let (code, _) = timed(&a1).await;
    assert_eq!(code, 429, "the fleet's budget is spent");
    let r = a2.get("/limited").await.unwrap();
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry), "one interval (1h): {retry}");

    // Redis hangs (SIGSTOP): no request waits much beyond the 100 ms backend timeout, and each
    // gateway counts on its own (a fresh local budget of 4).
    redis.pause();
    let b1 = TlsClient::new(&pki, g1.addr, Some("b"));
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (code, took) = timed(&b1).await;
        assert!(took < Duration::from_millis(1000), "stalled {took:?}");
        codes.push(code);
    }
    assert_eq!(
        codes,
        [200, 200, 200, 200, 429],
        "local counting while Redis hangs"
    );
    assert!(
        g1.metric("certgate_limit_backend_errors_total{reason=\"timeout\"}")
            .await
            >= 1.0
    );
    assert!(
        g1.metric("certgate_limit_backend_errors_total{reason=\"unavailable\"}")
            .await
            >= 3.0
    );
    g1.wait_for_log("rate-limit backend unavailable").await;
    assert!(
        g1.logs()
            .contains("\"limit_backend_error\":\"unavailable\"")
    );

    // Back: counters are shared again (a fresh identity, so both gateways count together).
    let (seen1, seen2) = (shared(&g1), shared(&g2));
    redis.resume();
    wait_shared_again(&g1, seen1).await;
    let c1 = TlsClient::new(&pki, g1.addr, Some("c"));
    let c2 = TlsClient::new(&pki, g2.addr, Some("c"));
    assert_eq!(statuses(&c1, 3).await, [200, 200, 200]);
    assert_eq!(statuses(&c2, 2).await, [200, 429]);

    // Redis dies (connections reset): still answered at once, then shared after a restart.
    let (seen1, seen2) = (shared(&g1), shared(&g2).max(seen2));
    redis.stop();
    let b2 = TlsClient::new(&pki, g2.addr, Some("b"));
    for _ in 0..3 {
        let (code, took) = timed(&b2).await;
        assert_eq!(code, 200);
        assert!(took < Duration::from_millis(1000), "stalled {took:?}");
    }
    let failed = g2
        .metric("certgate_limit_backend_errors_total{reason=\"error\"}")
        .await
        + g2.metric("certgate_limit_backend_errors_total{reason=\"timeout\"}")
            .await
        + g2.metric("certgate_limit_backend_errors_total{reason=\"unavailable\"}")
            .await;
    assert!(failed >= 3.0, "{failed}");
    redis.restart().await;
    // Each gateway's own probe notices the outage and the recovery, with or without traffic.
    wait_shared_again(&g1, seen1).await;
    wait_shared_again(&g2, seen2).await;
    assert!(g1.logs().matches("rate-limit backend unavailable").count() >= 2);
    // The restarted Redis is empty: "a" has a fresh fleet budget of 4, shared by both.
    assert_eq!(statuses(&a2, 3).await, [200, 200, 200]);
    assert_eq!(statuses(&a1, 2).await, [200, 429]);
}

/// How often the gateway has logged that its counters are shared.
fn shared(g: &Gateway) -> usize {
    g.logs().matches("counters are shared").count()
}

/// Waits until the gateway logged "counters are shared" again, after `before` times.
async fn wait_shared_again(g: &Gateway, before: usize) {
    wait_until("the backend to be back", Duration::from_secs(5), || {
        shared(g) > before
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_answers_by_on_backend_error_deny_or_allow() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    let nowhere = format!("redis://{}/0", dead_addr(1));
    let (path, addr, admin) = write_config(&pki, "gw", &up.url(), &redis_limits(&nowhere, "deny"));
    let g = Gateway::launch(&path, addr, admin).await;
    let a = TlsClient::new(&pki, g.addr, Some("a"));
    let r = a.get("/limited").await.unwrap();
    assert_eq!(
        r.status, 429,
        "deny: refused while the fleet's counters are unknown"
    );
    assert_eq!(r.headers["retry-after"], "1");
    g.wait_for_log("rate-limit backend not reachable at start")
        .await;

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"deny\"", "\"allow\"")).unwrap();
    let (code, body) = admin_post(g.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        statuses(&a, 6).await,
        [200; 6],
        "allow: let through, burst or not"
    );
    assert!(
        g.metric("certgate_limit_backend_errors_total{reason=\"unavailable\"}")
            .await
            >= 7.0
    );
    assert_eq!(up.seen().len(), 6);
}

#[test]
fn check_refuses_bad_limits_sections_naming_the_key() {
    let pki = Pki::new();
    for (limits, needle) in [
        (
            "backend = \"redis\"",
            "limits.redis_url: required with backend = \"redis\"",
        ),
        ("backend = \"memcached\"", "unknown variant `memcached`"),
        (
            "backend = \"redis\"\nredis_url = \"http://127.0.0.1:1/\"",
            "limits.redis_url:",
        ),
        ("on_backend_error = \"retry\"", "unknown variant `retry`"),
        (
            "backend_timeout = \"0s\"",
            "limits.backend_timeout: must be greater than zero",
        ),
    ] {
        let (path, _, _) = write_config(&pki, "bad", "http://127.0.0.1:1", limits);
        let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{limits}");
        assert!(
            format!("{out}{err}").contains(needle),
            "{needle}: {out}{err}"
        );
    }
    let (path, _, _) = write_config(
        &pki,
        "good",
        "http://127.0.0.1:1",
        "backend = \"redis\"\nredis_url = \"redis://user:secret@127.0.0.1:6390/1\"",
    );
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("limits     redis redis://127.0.0.1:6390/1 (on error: local, timeout 50ms)"),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
}
