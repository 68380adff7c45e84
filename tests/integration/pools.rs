//! Upstream pools: load balancing, retries, outlier ejection, health checks.

use std::time::Duration;

use crate::common::*;

fn pool_config(endpoints: &[String], extra: &str) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}[upstreams.pool]\nendpoints = [{list}]\n{extra}\n\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"pool\"\nallow = [{{ any = true }}]\n",
        client_auth("require", "")
    )
}

async fn get_ok(client: &TlsClient, n: usize) {
    for i in 0..n {
        let r = client.get(&format!("/item/{i}")).await.expect("request");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
}

#[tokio::test]
async fn round_robin_spreads_and_retries_around_a_dead_endpoint() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let ups = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let urls: Vec<String> = ups.iter().map(Upstream::url).collect();
    let gw = Gateway::start(
        &pki,
        &pool_config(&urls, "eject_after = 2\nejection_time = \"1s\""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));

    get_ok(&client, 30).await;
    let counts: Vec<usize> = ups.iter().map(|u| u.seen().len()).collect();
    assert_eq!(counts, [10, 10, 10], "round robin spreads evenly");

    // One endpoint dies mid-test: idempotent requests are retried elsewhere, none fails.
    ups[1].stop();
    get_ok(&client, 30).await;
    assert_eq!(
        ups[1].seen().len(),
        10,
        "the dead endpoint served nothing more"
    );
    gw.assert_metric(r#"certgate_upstream_ejections_total{upstream="pool"}"#, 1.0)
        .await;
    let (_, m) = admin_get(gw.admin, "/metrics").await.unwrap();
    let retries = metric_value(&m, r#"certgate_upstream_retries_total{upstream="pool"}"#).unwrap();
    assert!(retries >= 2.0, "retries: {retries}");

    // It comes back on the same port and, after its ejection time, gets traffic again.
    let revived = Upstream::start_with(UpstreamOptions {
        addr: Some(ups[1].addr),
        ..Default::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    get_ok(&client, 30).await;
    assert!(
        revived.seen().len() >= 8,
        "revived endpoint got {}",
        revived.seen().len()
    );
}

#[tokio::test]
async fn all_endpoints_down_gives_503() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let dead = [
        format!("http://{}", dead_addr(1)),
        format!("http://{}", dead_addr(2)),
    ];
    let gw = Gateway::start(
        &pki,
        &pool_config(&dead, "eject_after = 1\nejection_time = \"60s\""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let r = client.get("/x").await.unwrap();
    assert_eq!(r.status, 502, "both unreachable: {}", r.text());
    let r = client.get("/x").await.unwrap();
    assert_eq!(r.status, 503, "both ejected: {}", r.text());
    gw.assert_metric(
        r#"certgate_upstream_requests_total{outcome="no_healthy_endpoint",upstream="pool"}"#,
        1.0,
    )
    .await;
    // Non-idempotent requests are never retried.
    let post = http::Request::post("/x")
        .header("host", "localhost")
        .body(TestBody::bytes("x"))
        .unwrap();
    assert_eq!(client.send(post).await.unwrap().status, 503);
}

#[tokio::test]
async fn health_checks_take_an_endpoint_out_and_bring_it_back() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let extra =
        "health_check = { path = \"/healthz\", interval = \"100ms\", unhealthy_threshold = 1 }";
    let gw = Gateway::start(&pki, &pool_config(&[a.url(), b.url()], extra)).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    b.set_healthy(false);
    gw.wait_for_log("endpoint failed its health checks").await;
    let before = b.seen().len();
    get_ok(&client, 10).await;
    assert_eq!(
        b.seen().len(),
        before,
        "an unhealthy endpoint gets no traffic"
    );
    b.set_healthy(true);
    gw.wait_for_log("endpoint healthy again").await;
    get_ok(&client, 10).await;
    assert_eq!(b.seen().len(), before + 5, "back in rotation");
}

#[tokio::test]
async fn least_requests_prefers_the_idle_endpoint() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start(
        &pki,
        &pool_config(&[a.url(), b.url()], "lb = \"least_requests\""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    // Four slow requests occupy endpoints; the policy balances them two and two...
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get("/wait").await })
        })
        .collect();
    let wait_counts = |u: &Upstream| {
        u.seen()
            .iter()
            .filter(|s| s.path_and_query == "/wait")
            .count()
    };
    wait_until(
        "the four slow requests to reach the upstreams",
        Duration::from_secs(2),
        || wait_counts(&a) + wait_counts(&b) == 4,
    )
    .await;
    assert_eq!(
        (wait_counts(&a), wait_counts(&b)),
        (2, 2),
        "in-flight requests are balanced"
    );
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test]
async fn upstream_connections_are_reused_replaced_and_closed_when_idle() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(
        &pki,
        &pool_config(&[up.url()], "idle_timeout = \"1s\"\nretries = 0"),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    // Sequential requests, each on a new client connection, share one upstream connection.
    get_ok(&client, 20).await;
    assert_eq!(up.accepted(), 1, "one kept-alive upstream connection");
    gw.assert_metric(
        r#"certgate_upstream_connections_opened_total{upstream="pool"}"#,
        1.0,
    )
    .await;

    // The upstream closes after each answer: the next request, even a POST with a body that
    // cannot be retried, goes out on a new connection without an error.
    for i in 0..10 {
        let r = client.get("/close").await.expect("request");
        assert_eq!(r.status, 200, "close {i}");
        let r = post_upload(&client, 1000).await;
        assert_eq!(r.status, 200, "post {i}: {}", r.text());
    }
    assert!(up.accepted() >= 11, "closed connections were replaced");

    // The upstream drops its idle connections without a word (its own idle timeout): the
    // gateway notices before it sends on one, so even a POST that cannot be retried is answered.
    for i in 0..3 {
        get_ok(&client, 2).await;
        let before = up.accepted();
        up.close_connections();
        wait_until(
            "the upstream to drop its connections",
            Duration::from_secs(5),
            || up.open() == 0,
        )
        .await;
        let r = post_upload(&client, 100).await;
        assert_eq!(r.status, 200, "post after a silent close {i}: {}", r.text());
        assert!(up.accepted() > before, "a new upstream connection for {i}");
    }

    // Idle longer than idle_timeout: the gateway closes its upstream connections.
    wait_until(
        "idle upstream connections to close",
        Duration::from_secs(8),
        || up.open() == 0,
    )
    .await;
    get_ok(&client, 1).await;
}

#[tokio::test]
async fn idle_connections_a_burst_left_behind_are_closed_while_steady_traffic_keeps_its_own() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    // idle_timeout far beyond the test: only the purge of unneeded connections closes any.
    let gw = Gateway::start(
        &pki,
        &pool_config(&[up.url()], "idle_timeout = \"10m\"\nretries = 0"),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    // A burst of 12 requests in flight at once opens 12 upstream connections.
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.get(&format!("/wait/{i}")).await })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.expect("task").expect("request").status, 200);
    }
    assert_eq!(
        up.open(),
        12,
        "one upstream connection per request in flight"
    );
    // Then one request at a time: the sweep (every 5 s) closes half of what that does not use,
    // sweep by sweep, while the traffic itself never waits for a new connection.
    wait_for(
        "the sweeps to close unused connections",
        Duration::from_secs(25),
        || async {
            get_ok(&client, 1).await;
            match up.open() {
                n if n <= 2 => Ok(()),
                n => Err(format!("{n} upstream connections open")),
            }
        },
    )
    .await;
    assert_eq!(
        up.accepted(),
        12,
        "steady traffic opened no connection of its own"
    );
}

/// A POST of `len` bytes to `/upload`: a request with a body, never retried.
async fn post_upload(client: &TlsClient, len: usize) -> Reply {
    let post = http::Request::post("/upload")
        .header("host", "localhost")
        .body(TestBody::bytes(vec![b'x'; len]))
        .expect("request");
    client.send(post).await.expect("post")
}

/// An upstream that answers `/early` at once without reading the request body (and then only
/// drains that connection), and anything else with `ok` on a keep-alive connection.
async fn early_answering_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let early = buf.starts_with(b"POST /early ");
                    buf.drain(..end + 4);
                    let body: &[u8] = if early { b"early" } else { b"ok" };
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if tcp.write_all(head.as_bytes()).await.is_err()
                        || tcp.write_all(body).await.is_err()
                    {
                        return;
                    }
                    if early {
                        while matches!(tcp.read(&mut chunk).await, Ok(n) if n > 0) {}
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = early_answering_upstream().await;
    let gw = Gateway::start(
        &pki,
        &pool_config(&[format!("http://{up}")], "retries = 0\ntimeout = \"3s\""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    // A client starts a large upload and stalls; the upstream answers before reading it.
    let mut stalled = client.tls(&Proto::H1).await.unwrap();
    stalled
        .write_all(
            b"POST /early HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\nxxxx",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"early") {
        let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut chunk))
            .await
            .expect("early answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&chunk[..n]);
    }
    // That upstream connection is still busy with the upload: the next request must get
    // another one, not wait for it (which would end in a 504 here).
    let started = std::time::Instant::now();
    let r = client.get("/next").await.expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(stalled);
}
