//! Limits against abuse: each fires with its own answer and metric, and a flood of slow clients
//! does not stop good clients from being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn config(up: &Upstream) -> String {
    format!(
        "{}{}\n[[routes]]\nname = \"small\"\npath_prefix = \"/small\"\nupstream = \"up\"\nmax_request_body = \"1KiB\"\nallow = [{{ any = true }}]\n\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    )
}

async fn setup(listener: &str) -> (Pki, Upstream, Gateway) {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start_with_listener(&pki, listener, &config(&up)).await;
    (pki, up, gw)
}

fn limit(name: &str) -> String {
    format!("certgate_limit_hits_total{{limit=\"{name}\"}}")
}

fn get(path: &str) -> http::Request<TestBody> {
    http::Request::get(path)
        .header("host", "localhost")
        .body(TestBody::empty())
        .unwrap()
}

#[tokio::test]
async fn the_default_head_limit_holds_exactly_on_http1_and_http2() {
    // Default max_request_header_bytes: 64 KiB. The parser's buffer alone let an 80 KB head
    // through; the limit holds to the byte, and HTTP/2 gets a 431 response, not a reset.
    let (pki, up, gw) = setup("").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let head = |size: usize| {
        let start = "GET /x HTTP/1.1\r\nhost: localhost\r\nx-pad: ";
        let pad = size - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    for (size, status) in [(65536, 200), (65537, 431), (80_000, 431)] {
        let raw = head(size);
        assert_eq!(raw.len(), size);
        let answer = raw_exchange(&client, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), status, "{size} bytes: {answer}");
    }
    assert_eq!(
        up.seen().len(),
        1,
        "only the head within the limit is forwarded"
    );
    gw.assert_metric(&limit("header_bytes"), 2.0).await;

    let mut h2 = client.h2().await.unwrap();
    let big = |n: usize| {
        http::Request::get("https://localhost/x")
            .header("x-pad", "a".repeat(n))
            .body(TestBody::empty())
            .unwrap()
    };
    let r = h2.send_request(big(90_000)).await.expect("a response");
    assert_eq!(r.status(), 431);
    let r = read_reply(r).await.unwrap();
    assert!(
        r.text().contains("request_header_fields_too_large"),
        "{}",
        r.text()
    );
    let r = h2.send_request(big(60_000)).await.expect("a response");
    assert_eq!(r.status(), 200, "the connection goes on");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let (pki, up, gw) = setup("max_request_header_bytes = \"16KiB\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let req = http::Request::get("/x")
        .header("host", "localhost")
        .header("x-big", "a".repeat(40 * 1024))
        .body(TestBody::empty())
        .unwrap();
    let r = client.send(req).await.expect("an answer, not a reset");
    assert_eq!(r.status, 431);
    assert!(up.seen().is_empty());
    gw.assert_metric(&limit("header_bytes"), 1.0).await;
    let ok = http::Request::get("/x")
        .header("host", "localhost")
        .header("x-ok", "a".repeat(8 * 1024));
    assert_eq!(
        client
            .send(ok.body(TestBody::empty()).unwrap())
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn oversized_body_gets_413_declared_or_streamed() {
    let (pki, _up, gw) = setup("").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let post = |body: TestBody| {
        http::Request::post("/small/upload")
            .header("host", "localhost")
            .body(body)
            .unwrap()
    };
    assert_eq!(
        client
            .send(post(TestBody::bytes(vec![b'x'; 1024])))
            .await
            .unwrap()
            .status,
        200
    );
    let declared = client
        .send(post(TestBody::bytes(vec![b'x'; 2048])))
        .await
        .unwrap();
    assert_eq!(declared.status, 413);
    let body: serde_json::Value = serde_json::from_slice(&declared.body).unwrap();
    assert_eq!(body["error"], "payload_too_large");
    // No Content-Length: counted while streaming, cut off past the limit.
    let streamed = client
        .send(post(TestBody::unsized_pattern(4)))
        .await
        .unwrap();
    assert_eq!(streamed.status, 413);
    gw.assert_metric(&limit("body_bytes"), 2.0).await;
    gw.assert_metric(
        r#"certgate_requests_total{code="413",method="POST",route="small"}"#,
        2.0,
    )
    .await;
    // Other routes keep the (larger) default.
    let big = http::Request::post("/upload")
        .header("host", "localhost")
        .body(TestBody::pattern(4))
        .unwrap();
    assert_eq!(client.send(big).await.unwrap().status, 200);
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let (pki, _up, gw) = setup("header_read_timeout = \"500ms\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut tls = client.tls(&Proto::H1).await.unwrap();
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after the header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    gw.assert_metric(&limit("header_timeout"), 1.0).await;
}

#[tokio::test]
async fn idle_keep_alive_connection_closes_without_counting_a_slow_head() {
    let (pki, _up, gw) = setup("header_read_timeout = \"500ms\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut send = client.h1().await.unwrap();
    let r = read_reply(send.send_request(get("/x")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Idle past the header timeout: the gateway closes the connection...
    wait_until(
        "the idle keep-alive connection to close",
        Duration::from_secs(5),
        || send.is_closed(),
    )
    .await;
    gw.wait_for_log("idle keep-alive connection closed").await;
    // ...without counting it as a slow request head.
    gw.assert_metric(&limit("header_timeout"), 0.0).await;
}

#[tokio::test]
async fn connection_limit_makes_new_clients_wait() {
    let (pki, _up, gw) = setup("max_connections = 2\nmax_connections_per_identity = 0").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut first = client.h1().await.unwrap();
    let _second = client.h1().await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(700), client.h1()).await;
    assert!(
        third.is_err(),
        "a third connection is not served while two are open"
    );
    gw.assert_metric(&limit("connections"), 1.0).await;
    // The first still works; when it closes, a new client gets in.
    assert_eq!(first.send_request(get("/x")).await.unwrap().status(), 200);
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(5), client.get("/x")).await;
    assert_eq!(r.expect("served once a slot frees").unwrap().status, 200);
}

#[tokio::test]
async fn requests_per_connection_limit_closes_the_connection() {
    let (pki, _up, gw) = setup("max_requests_per_connection = 3").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut conn = client.h1().await.unwrap();
    for i in 0..3 {
        let r = read_reply(conn.send_request(get(&format!("/r/{i}"))).await.unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    wait_until(
        "the connection to close after 3 requests",
        Duration::from_secs(2),
        || conn.is_closed(),
    )
    .await;
    assert!(
        conn.send_request(get("/r/4")).await.is_err(),
        "closed after 3 requests"
    );
    gw.assert_metric(&limit("requests_per_connection"), 1.0)
        .await;

    // HTTP/2: GOAWAY after the limit.
    let mut h2 = client.h2().await.unwrap();
    for i in 0..3 {
        let req = http::Request::get(format!("https://localhost/h2/{i}"))
            .body(TestBody::empty())
            .unwrap();
        assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    }
    wait_until(
        "the HTTP/2 connection to end after its GOAWAY",
        Duration::from_secs(2),
        || h2.is_closed(),
    )
    .await;
    let req = http::Request::get("https://localhost/h2/4")
        .body(TestBody::empty())
        .unwrap();
    assert!(h2.send_request(req).await.is_err(), "GOAWAY received");
    gw.assert_metric(&limit("requests_per_connection"), 2.0)
        .await;
}

#[tokio::test]
async fn http2_stream_limit_queues_excess_streams() {
    let (pki, up, gw) = setup("max_concurrent_streams = 2").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut h2 = client.h2().await.unwrap();
    // One round trip first, so the client has the server's SETTINGS (and its stream limit):
    // streams opened before that may be refused with REFUSED_STREAM instead of queued.
    let warm = http::Request::get("https://localhost/warm")
        .body(TestBody::empty())
        .unwrap();
    assert_eq!(h2.send_request(warm).await.unwrap().status(), 200);
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                let req = http::Request::get(format!("https://localhost/wait/{i}"))
                    .body(TestBody::empty())
                    .unwrap();
                h2.send_request(req).await.map(|r| r.status())
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 200);
    }
    // Each takes 500 ms upstream; with two streams at a time, four take two rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.seen().len(), 5);
}

/// 100 clients stall inside the TLS handshake and 100 inside the HTTP request head, each
/// sending one byte a second (bounded: at most 6 bytes each, loopback only), while a good client
/// keeps getting answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_good_clients() {
    let (pki, _up, gw) = setup("handshake_timeout = \"2s\"\nheader_read_timeout = \"2s\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut slow = Vec::new();
    for i in 0..200 {
        let addr = gw.addr;
        let client = client.clone();
        slow.push(tokio::spawn(async move {
            let hello: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
            let head: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\n";
            if i % 2 == 0 {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                for b in hello.iter().take(6) {
                    if tcp.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            } else {
                let Ok(mut tls) = client.tls(&Proto::H1).await else {
                    return;
                };
                for b in head.iter().take(6) {
                    if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        let r = client
            .get("/good")
            .await
            .expect("good client served during the flood");
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "slow answer: {:?}",
            started.elapsed()
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 10, "served {served}");
    for s in slow {
        let _ = s.await;
    }
    let (_, m) = admin_get(gw.admin, "/metrics").await.unwrap();
    let handshake = metric_value(&m, &limit("handshake_timeout")).unwrap();
    let header = metric_value(&m, &limit("header_timeout")).unwrap();
    assert!(handshake >= 90.0, "stalled handshakes cut off: {handshake}");
    assert!(header >= 90.0, "stalled request heads cut off: {header}");
}

#[tokio::test]
async fn idle_http2_connections_are_closed_with_goaway() {
    let (pki, _up, gw) = setup("idle_timeout = \"1s\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    // Preface and SETTINGS, then nothing.
    let silent = client.h2().await.unwrap();
    // One request, then nothing.
    let mut used = client.h2().await.unwrap();
    let r = used.send_request(get("/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    wait_until(
        "both idle HTTP/2 connections to close",
        Duration::from_secs(10),
        || silent.is_closed() && used.is_closed(),
    )
    .await;
    assert!(gw.metric(&limit("idle")).await >= 2.0);
    // A busy connection is not idle: a request that takes longer than idle_timeout finishes.
    let mut busy = client.h2().await.unwrap();
    for _ in 0..4 {
        let r = busy.send_request(get("/x")).await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(!busy.is_closed(), "a connection in use stays open");
}

#[tokio::test]
async fn one_identity_cannot_hold_every_connection() {
    let pki = Pki::new();
    pki.client(&pki.root, "hog", workload("hog"));
    pki.client(&pki.root, "other", workload("other"));
    let up = Upstream::start().await;
    // max_connections 6: one certificate may hold 3 (half, the default).
    let gw = Gateway::start_with_listener(&pki, "max_connections = 6", &config(&up)).await;
    let hog = TlsClient::new(&pki, gw.addr, Some("hog"));
    // Four connections of one certificate; which three the gateway admits depends on the order
    // their handshakes finish on its side, so count: three serve a request, one is closed.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(hog.h2().await);
    }
    let mut served = 0;
    for c in conns.iter_mut() {
        if let Ok(s) = c
            && let Ok(r) = s.send_request(get("/x")).await
            && r.status() == 200
        {
            served += 1;
        }
    }
    assert_eq!(
        served, 3,
        "three connections of one certificate are served, the fourth is closed"
    );
    gw.assert_metric(&limit("connections_per_identity"), 1.0)
        .await;
    // Everyone else still gets in.
    let other = TlsClient::new(&pki, gw.addr, Some("other"));
    assert_eq!(other.get("/x").await.expect("other served").status, 200);
    drop(conns);
}

#[tokio::test]
async fn one_source_ip_can_be_capped() {
    let (pki, _up, gw) = setup("max_connections_per_source_ip = 2").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let a = client.h2().await.unwrap();
    let b = client.h2().await.unwrap();
    let third = client.h2().await;
    assert!(
        third.is_err(),
        "a third connection from 127.0.0.1 is closed before TLS"
    );
    gw.assert_metric(&limit("connections_per_source_ip"), 1.0)
        .await;
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.get("/x").await.expect("served again").status, 200);
}

#[tokio::test]
async fn a_ping_flood_gets_goaway_enhance_your_calm_and_others_are_served() {
    let (pki, _up, gw) = setup("h2_max_pings_per_second = 200").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut tls = client.tls(&Proto::H2).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
    // HEADERS on stream 1 (GET https://localhost/x, HPACK: :method GET, :scheme https, :path
    // "/", :authority "localhost"), END_STREAM|END_HEADERS: the GOAWAY must name stream 1.
    let block = [
        0x82, 0x87, 0x84, 0x41, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't',
    ];
    bytes.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    bytes.extend_from_slice(&block);
    let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    for _ in 0..5000 {
        bytes.extend_from_slice(&ping);
    }
    // The write may fail part-way once the gateway closes the connection: that is the point.
    let _ = tls.write_all(&bytes).await;
    let _ = tls.flush().await;
    let mut received = Vec::new();
    let mut sink = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                received.extend_from_slice(&sink[..n]);
                assert!(Instant::now() < deadline, "still reading PING ACKs");
            }
            Err(_) => panic!("the flooding connection stayed open"),
        }
    }
    // The server's frames, whole: the last one is GOAWAY (last stream 1, ENHANCE_YOUR_CALM).
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= received.len() {
        let len = usize::from(received[at]) << 16
            | usize::from(received[at + 1]) << 8
            | usize::from(received[at + 2]);
        assert!(at + 9 + len <= received.len(), "a frame cut in half");
        frames.push((received[at + 3], &received[at + 9..at + 9 + len]));
        at += 9 + len;
    }
    assert_eq!(at, received.len(), "whole frames only");
    let (kind, payload) = frames.last().expect("frames from the gateway");
    assert_eq!(*kind, 0x7, "the last frame is GOAWAY");
    assert_eq!(&payload[..4], &1u32.to_be_bytes(), "last stream id");
    assert_eq!(&payload[4..8], &0xbu32.to_be_bytes(), "ENHANCE_YOUR_CALM");
    gw.assert_metric(&limit("h2_control_flood"), 1.0).await;
    gw.wait_for_log("GOAWAY ENHANCE_YOUR_CALM").await;
    // A well-behaved HTTP/2 client is untouched.
    let mut h2 = client.h2().await.unwrap();
    assert_eq!(h2.send_request(get("/x")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_idle_http2_client_that_never_reads_is_closed_after_a_short_grace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No keep-alive PINGs: before the fix such a connection stayed open for ever.
    let (pki, _up, gw) = setup("idle_timeout = \"1s\"\nh2_keepalive_interval = \"0s\"").await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut tls = client.tls(&Proto::H2).await.unwrap();
    // The preface and an empty SETTINGS frame; then it never reads, acknowledges or writes.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // What the gateway sent (its SETTINGS, the GOAWAY, a PING) and then the end.
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(
        closed,
        "the connection is still open 5 s after idle_timeout"
    );
    assert!(gw.metric(&limit("idle")).await >= 1.0);
}
