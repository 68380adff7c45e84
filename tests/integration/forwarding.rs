//! Forwarding: headers, upstream failures, streaming, graceful shutdown.

use std::time::{Duration, Instant};

use crate::common::*;

fn config(up_url: &str, upstream_extra: &str) -> String {
    format!(
        r#"{}{}{}
[[routes]]
name = "down"
path_prefix = "/down"
upstream = "dead"
allow = [{{ any = true }}]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up_url, upstream_extra),
        // Nothing listens there.
        upstream_section("dead", &format!("http://{}", dead_addr(1)), ""),
    )
}

#[tokio::test]
async fn headers_to_and_from_the_upstream() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let req = http::Request::get("/h?x=1")
        .header("host", "api.example.com:8443")
        .header("x-request-id", "client-chosen-id-1")
        .header("x-forwarded-for", "10.9.8.7")
        .header("x-forwarded-proto", "http")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "must not pass")
        .header("te", "trailers, deflate")
        .header("authorization", "Bearer passes-through")
        .body(TestBody::empty())
        .unwrap();
    let r = client.send(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "upstream saw /h?x=1");
    assert!(
        r.headers.get("x-upstream-hop").is_none(),
        "response hop-by-hop headers are removed"
    );
    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(
        h.get("host").unwrap(),
        "api.example.com:8443",
        "Host is preserved"
    );
    // The request id is the gateway's own (unique, unpredictable); the client's is logged aside.
    let own = h.get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert_ne!(own, "client-chosen-id-1");
    assert_eq!(own.len(), 32, "{own}");
    gw.wait_for_log(&format!(
        "\"request_id\":\"{own}\",\"client_request_id\":\"client-chosen-id-1\""
    ))
    .await;
    assert_eq!(
        h.get("x-forwarded-for").unwrap(),
        "127.0.0.1",
        "client XFF is not trusted"
    );
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    assert!(h.get("x-client-hop").is_none());
    assert_eq!(h.get("te").unwrap(), "trailers");
    assert_eq!(h.get("authorization").unwrap(), "Bearer passes-through");

    // A malformed client id is not logged; the gateway's id is fresh.
    let req = http::Request::get("/h2")
        .header("host", "localhost")
        .header("x-request-id", "bad id with spaces")
        .body(TestBody::empty())
        .unwrap();
    client.send(req).await.unwrap();
    let id = up.seen()[1]
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(id, own);
    assert!(!gw.logs().contains("bad id with spaces"));
}

#[tokio::test]
async fn a_client_cannot_give_its_requests_one_id() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    for _ in 0..3 {
        let req = http::Request::get("/same")
            .header("host", "localhost")
            .header("x-request-id", "same-id")
            .body(TestBody::empty())
            .unwrap();
        assert_eq!(client.send(req).await.unwrap().status, 200);
    }
    let ids: std::collections::HashSet<String> = up
        .seen()
        .iter()
        .map(|s| {
            s.headers
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3, "three requests, three ids: {ids:?}");
    wait_until(
        "the three client ids to be logged",
        Duration::from_secs(2),
        || {
            gw.logs()
                .matches("\"client_request_id\":\"same-id\"")
                .count()
                == 3
        },
    )
    .await;
}

#[tokio::test]
async fn upstream_down_gives_502_and_hang_gives_504() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = Gateway::start(&pki, &config(&up.url(), "timeout = \"400ms\"")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));

    let r = client.get("/down/x").await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"],
        "bad_gateway"
    );

    let started = Instant::now();
    let r = client.get("/slow").await.unwrap();
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout honoured"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"],
        "gateway_timeout"
    );

    let r = client.get("/fine").await.unwrap();
    assert_eq!(r.status, 200, "the gateway stays healthy");
    gw.assert_metric(
        r#"certgate_requests_total{code="502",method="GET",route="down"}"#,
        1.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_requests_total{code="504",method="GET",route="all"}"#,
        1.0,
    )
    .await;
    gw.wait_for_log("unreachable").await; // the 502's cause
    gw.wait_for_log("did not answer within").await; // the 504's cause
}

#[tokio::test]
async fn sixty_four_mib_stream_both_ways_with_bounded_memory() {
    const CHUNKS: usize = 1024; // 64 MiB
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let rss_before = gw.peak_rss_kib();

    let req = http::Request::post("/upload")
        .header("host", "localhost")
        .body(TestBody::pattern(CHUNKS))
        .unwrap();
    let r = client.send(req).await.expect("upload");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), pattern_sha256(CHUNKS), "upload arrives intact");
    assert_eq!(up.seen()[0].method, "POST");

    let mut send = client.h1().await.unwrap();
    let resp = send
        .send_request(
            http::Request::get(format!("/download/{CHUNKS}"))
                .header("host", "localhost")
                .body(TestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut total = 0usize;
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.expect("frame").data_ref() {
            total += d.len();
            ctx.update(d);
        }
    }
    assert_eq!(total, CHUNKS * CHUNK.len());
    assert_eq!(
        hex::encode(ctx.finish()),
        pattern_sha256(CHUNKS),
        "download arrives intact"
    );

    let growth_mib = (gw.peak_rss_kib().saturating_sub(rss_before)) / 1024;
    assert!(
        growth_mib < 24,
        "gateway peak RSS grew by {growth_mib} MiB moving 2 x 64 MiB: bodies must stream"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    // An upstream that answers after 1.5 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(TestBody::bytes(
                        "finally",
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let mut gw = Gateway::start_with_listener(
        &pki,
        "drain_timeout = \"10s\"",
        &config(&format!("http://{slow_addr}"), ""),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let in_flight = tokio::spawn(async move { client.get("/slowish").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    gw.signal("TERM");
    // Not accepting any more.
    wait_for(
        "new connections to be refused while draining",
        Duration::from_secs(2),
        || async {
            match TlsClient::new(&pki, gw.addr, Some("reader"))
                .get("/x")
                .await
            {
                Err(_) => Ok(()),
                Ok(r) => Err(format!("served {}", r.status)),
            }
        },
    )
    .await;
    let r = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "finally");
    let status = gw.wait_exit(Duration::from_secs(8)).await;
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(8));
}
