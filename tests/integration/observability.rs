//! Metrics, access log and credential inventory, checked against scripted traffic.

use std::time::Duration;

use certgate_testpki::{Ca, LeafSpec};
use serde_json::Value;

use crate::common::*;

fn config(up: &Upstream, inventory: &str) -> String {
    format!(
        r#"{}{}
{inventory}

[[routes]]
name = "payments"
path_prefix = "/payments"
upstream = "up"
allow = [{{ uri = "{reader}" }}, {{ cn = "short-lived" }}]

[[routes]]
name = "upload"
path_prefix = "/upload"
upstream = "up"
allow = [{{ uri = "{reader}" }}]
"#,
        client_auth("require", "crls = [\"ca.crl\"]"),
        upstream_section("up", &up.url(), ""),
        reader = spiffe("reader"),
    )
}

fn pki() -> Pki {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "writer", workload("writer"));
    pki.client(
        &pki.root,
        "short",
        LeafSpec {
            not_after_secs: 5 * 86400,
            ..LeafSpec::client("short-lived")
        },
    );
    pki.write(
        "ca.crl",
        &pki.root.crl(&[], Duration::from_secs(3 * 86400)).unwrap(),
    );
    pki
}

/// Every non-comment line of the exposition is `name{labels} value`.
fn assert_prometheus_text(body: &str) {
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
    }
}

/// JSON log lines of the gateway with the given target.
fn log_events(gw: &Gateway, target: &str) -> Vec<Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == target)
        .collect()
}

#[tokio::test]
async fn metrics_count_exactly_what_was_sent() {
    let pki = pki();
    let up = Upstream::start().await;
    let stranger_ca = Ca::root("Stranger CA").unwrap();
    pki.client(&stranger_ca, "stranger", workload("reader"));
    let gw = Gateway::start(&pki, &config(&up, "")).await;
    let reader = TlsClient::new(&pki, gw.addr, Some("reader"));
    let writer = TlsClient::new(&pki, gw.addr, Some("writer"));

    // 5 allowed GETs on one keep-alive connection, 3 denied, 2 unrouted, 1 upload of 3 chunks,
    // 2 refused handshakes (no certificate, untrusted CA).
    let mut conn = reader.h1().await.unwrap();
    for i in 0..5 {
        let req = http::Request::get(format!("/payments/{i}"))
            .header("host", "localhost")
            .body(TestBody::empty())
            .unwrap();
        let r = read_reply(conn.send_request(req).await.unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(writer.get("/payments/x").await.unwrap().status, 403);
    }
    for _ in 0..2 {
        assert_eq!(reader.get("/nowhere").await.unwrap().status, 404);
    }
    let upload = http::Request::post("/upload")
        .header("host", "localhost")
        .body(TestBody::pattern(3))
        .unwrap();
    assert_eq!(reader.send(upload).await.unwrap().status, 200);
    assert!(
        TlsClient::new(&pki, gw.addr, None)
            .get("/payments/1")
            .await
            .is_err()
    );
    assert!(
        TlsClient::new(&pki, gw.addr, Some("stranger"))
            .get("/payments/1")
            .await
            .is_err()
    );
    drop(conn);

    let expect = [
        (
            r#"certgate_requests_total{code="200",method="GET",route="payments"}"#,
            5.0,
        ),
        (
            r#"certgate_requests_total{code="403",method="GET",route="payments"}"#,
            3.0,
        ),
        (
            r#"certgate_requests_total{code="404",method="GET",route="_none"}"#,
            2.0,
        ),
        (
            r#"certgate_requests_total{code="200",method="POST",route="upload"}"#,
            1.0,
        ),
        (
            r#"certgate_authz_decisions_total{decision="allow",route="payments"}"#,
            5.0,
        ),
        (
            r#"certgate_authz_decisions_total{decision="deny",route="payments"}"#,
            3.0,
        ),
        (
            r#"certgate_authz_decisions_total{decision="no_route",route="_none"}"#,
            2.0,
        ),
        (
            r#"certgate_authz_decisions_total{decision="allow",route="upload"}"#,
            1.0,
        ),
        (
            r#"certgate_request_duration_seconds_count{route="payments"}"#,
            8.0,
        ),
        (
            r#"certgate_request_duration_seconds_count{route="_none"}"#,
            2.0,
        ),
        (
            r#"certgate_upstream_requests_total{outcome="response",upstream="up"}"#,
            6.0,
        ),
        (
            r#"certgate_upstream_requests_total{outcome="connect_error",upstream="up"}"#,
            0.0,
        ),
        (
            r#"certgate_upstream_request_duration_seconds_count{upstream="up"}"#,
            6.0,
        ),
        (r#"certgate_tls_handshakes_total{result="ok"}"#, 7.0),
        (
            r#"certgate_tls_handshakes_total{result="no_certificate"}"#,
            1.0,
        ),
        (r#"certgate_tls_handshakes_total{result="unknown_ca"}"#, 1.0),
        (r#"certgate_tls_handshakes_total{result="revoked"}"#, 0.0),
        (
            r#"certgate_request_body_bytes_total{route="upload"}"#,
            (3 * CHUNK.len()) as f64,
        ),
        // "upstream saw /payments/N" is 24 bytes; a 403 body,
        // {"error":"forbidden","request_id":"<32 hex>"} and a newline, is 70.
        (
            r#"certgate_response_body_bytes_total{route="payments"}"#,
            5.0 * 24.0 + 3.0 * 70.0,
        ),
        (r#"certgate_active_connections"#, 0.0),
        (r#"certgate_inventory_identities"#, 2.0),
        (r#"certgate_config_reloads_total{result="ok"}"#, 0.0),
    ];
    for (series, value) in expect {
        gw.assert_metric(series, value).await;
    }
    let (_, body) = admin_get(gw.admin, "/metrics").await.unwrap();
    assert_prometheus_text(&body);
    let server_not_after = certgate::authn::identity::ClientIdentity::from_der(&pki.server.der)
        .unwrap()
        .not_after;
    assert_eq!(
        metric_value(&body, "certgate_server_cert_expiry_timestamp_seconds"),
        Some(server_not_after as f64)
    );
    let crl_series = format!(
        "certgate_crl_next_update_timestamp_seconds{{file=\"{}\"}}",
        pki.path("ca.crl").display()
    );
    let next_update = metric_value(&body, &crl_series).expect("CRL gauge");
    let in_3_days = certgate::util::time::unix_now() as f64 + 3.0 * 86400.0;
    assert!(
        (next_update - in_3_days).abs() < 120.0,
        "{next_update} vs {in_3_days}"
    );
}

#[tokio::test]
async fn access_log_lines_carry_the_request_and_the_identity() {
    let pki = pki();
    let up = Upstream::start().await;
    let stranger_ca = Ca::root("Stranger CA").unwrap();
    let stranger = pki.client(&stranger_ca, "stranger", workload("stranger"));
    let gw = Gateway::start(&pki, &config(&up, "")).await;
    let reader = TlsClient::new(&pki, gw.addr, Some("reader"));
    let req = |path: &str, id: &str| {
        http::Request::get(path)
            .header("host", "localhost")
            .header("x-request-id", id)
            .body(TestBody::empty())
            .unwrap()
    };
    assert_eq!(
        reader
            .send(req("/payments/a/../b", "req-allowed"))
            .await
            .unwrap()
            .status,
        200
    );
    let writer = TlsClient::new(&pki, gw.addr, Some("writer"));
    assert_eq!(
        writer
            .send(req("/payments/b", "req-denied"))
            .await
            .unwrap()
            .status,
        403
    );
    assert!(
        TlsClient::new(&pki, gw.addr, Some("stranger"))
            .get("/x")
            .await
            .is_err()
    );
    gw.assert_metric(
        r#"certgate_requests_total{code="403",method="GET",route="payments"}"#,
        1.0,
    )
    .await;
    gw.wait_for_log("req-denied").await;
    gw.wait_for_log("tls handshake refused").await;

    let events = log_events(&gw, "certgate::access");
    let find = |id: &str| {
        events
            .iter()
            .find(|e| e["client_request_id"] == id)
            .unwrap_or_else(|| panic!("no access log line for {id} in {events:#?}"))
            .clone()
    };
    let allowed = find("req-allowed");
    let reader_id = certgate::authn::identity::ClientIdentity::from_der(
        &std::fs::read_to_string(pki.path("reader.pem"))
            .map(|pem| {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .unwrap()
                    .to_vec()
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(allowed["client_sha256"], reader_id.sha256_hex.as_str());
    assert_eq!(allowed["host"], "localhost");
    assert_eq!(allowed["protocol"], "HTTP/1.1");
    assert_eq!(allowed["client_subject"], "CN=reader,O=Example");
    assert_eq!(allowed["client_uri"], spiffe("reader").as_str());
    assert_eq!(allowed["client_issuer"], "CN=Test Root CA");
    assert_eq!(allowed["client_serial"], reader_id.serial.as_str());
    assert_eq!(allowed["route"], "payments");
    assert_eq!(allowed["method"], "GET");
    assert_eq!(
        allowed["path"], "/payments/b",
        "the normalised path is logged"
    );
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["rule"], "allow[0]");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["upstream"], "up");
    assert_eq!(allowed["bytes_in"], 0);
    assert_eq!(allowed["bytes_out"], 24);
    assert!(allowed["upstream_latency_us"].as_u64().is_some());
    assert!(
        allowed["duration_us"].as_u64().unwrap()
            >= allowed["upstream_latency_us"].as_u64().unwrap()
    );
    assert!(
        allowed["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let denied = find("req-denied");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["rule"], "no allow entry matched");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["client_subject"], "CN=writer,O=Example");
    assert!(denied.get("upstream").is_none() || denied["upstream"].is_null());

    let refused: Vec<Value> = log_events(&gw, "certgate::tls")
        .into_iter()
        .filter(|e| e["message"] == "tls handshake refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["result"], "unknown_ca");
    assert_eq!(refused[0]["client_subject"], "CN=stranger,O=Example");
    assert_eq!(refused[0]["client_issuer"], "CN=Stranger CA");
    assert_eq!(refused[0]["client_serial"], stranger.serial_hex.as_str());
    let logs = gw.logs();
    assert!(!logs.contains("PRIVATE KEY"), "no key material in logs");
}

async fn inventory(gw: &Gateway, query: &str) -> Value {
    let (status, body) = admin_get(gw.admin, &format!("/inventory{query}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn subjects(inv: &Value) -> Vec<String> {
    inv["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn inventory_lists_each_client_once_with_counts_and_routes() {
    let pki = pki();
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &config(&up, "")).await;
    let reader = TlsClient::new(&pki, gw.addr, Some("reader"));
    for _ in 0..3 {
        reader.get("/payments/1").await.unwrap();
    }
    reader.get("/upload/x").await.unwrap();
    reader.get("/nowhere").await.unwrap();
    let writer = TlsClient::new(&pki, gw.addr, Some("writer"));
    writer.get("/payments/1").await.unwrap();
    writer.get("/upload").await.unwrap();
    TlsClient::new(&pki, gw.addr, Some("short"))
        .get("/payments/9")
        .await
        .unwrap();
    gw.assert_metric(
        r#"certgate_requests_total{code="200",method="GET",route="payments"}"#,
        4.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_requests_total{code="403",method="GET",route="upload"}"#,
        1.0,
    )
    .await;

    let inv = inventory(&gw, "").await;
    assert_eq!(inv["count"], 3);
    assert_eq!(
        subjects(&inv),
        [
            "CN=reader,O=Example",
            "CN=short-lived",
            "CN=writer,O=Example"
        ]
    );
    let reader_entry = &inv["identities"][0];
    assert_eq!(reader_entry["requests_allowed"], 4);
    assert_eq!(reader_entry["requests_denied"], 0);
    assert_eq!(
        reader_entry["routes"],
        serde_json::json!(["payments", "upload"])
    );
    assert_eq!(reader_entry["uris"], serde_json::json!([spiffe("reader")]));
    assert_eq!(reader_entry["issuer"], "CN=Test Root CA");
    assert!(
        reader_entry["first_seen"].as_i64().unwrap() <= reader_entry["last_seen"].as_i64().unwrap()
    );
    assert!(
        reader_entry["not_after_utc"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let writer_entry = &inv["identities"][2];
    assert_eq!(writer_entry["requests_allowed"], 0);
    assert_eq!(writer_entry["requests_denied"], 2);
    // Allowed and refused-only routes are told apart.
    assert_eq!(
        reader_entry["routes_allowed"],
        serde_json::json!(["payments", "upload"])
    );
    assert_eq!(reader_entry["routes_refused"], serde_json::json!([]));
    assert_eq!(writer_entry["routes_allowed"], serde_json::json!([]));
    assert_eq!(
        writer_entry["routes_refused"],
        serde_json::json!(["payments", "upload"])
    );

    assert_eq!(
        subjects(&inventory(&gw, "?expiring_within=7d").await),
        ["CN=short-lived"]
    );
    assert_eq!(
        subjects(&inventory(&gw, "?route=upload").await),
        ["CN=reader,O=Example", "CN=writer,O=Example"]
    );
    assert_eq!(
        inventory(&gw, "?route=upload&expiring_within=1d").await["count"],
        0
    );
    let (status, _) = admin_get(gw.admin, "/inventory?expiring_within=soon")
        .await
        .unwrap();
    assert_eq!(status, 400);

    gw.assert_metric(r#"certgate_client_certs_expiring{within="7d"}"#, 1.0)
        .await;
    gw.assert_metric(r#"certgate_client_certs_expiring{within="1d"}"#, 0.0)
        .await;
    gw.assert_metric(r#"certgate_inventory_identities"#, 3.0)
        .await;
}

#[tokio::test]
async fn inventory_cap_evicts_least_recently_seen() {
    let pki = pki();
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &config(&up, "[inventory]\nmax_entries = 2")).await;
    for name in ["reader", "writer"] {
        TlsClient::new(&pki, gw.addr, Some(name))
            .get("/payments/1")
            .await
            .unwrap();
        // last_seen has one-second resolution.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // reader is seen again, so writer is now the least recently seen.
    TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/payments/1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    TlsClient::new(&pki, gw.addr, Some("short"))
        .get("/payments/1")
        .await
        .unwrap();
    let inv = inventory(&gw, "").await;
    assert_eq!(subjects(&inv), ["CN=reader,O=Example", "CN=short-lived"]);
    gw.assert_metric("certgate_inventory_evictions_total", 1.0)
        .await;
}

#[tokio::test]
async fn inventory_survives_restart_and_corrupt_files_are_set_aside() {
    let pki = pki();
    let up = Upstream::start().await;
    let inv_path = pki.path("state/inventory.json");
    std::fs::create_dir_all(inv_path.parent().unwrap()).unwrap();
    let section = "[inventory]\npath = \"state/inventory.json\"\nflush_interval = \"1h\"";
    let mut gw = Gateway::start(&pki, &config(&up, section)).await;
    let reader = TlsClient::new(&pki, gw.addr, Some("reader"));
    for _ in 0..2 {
        reader.get("/payments/1").await.unwrap();
    }
    TlsClient::new(&pki, gw.addr, Some("writer"))
        .get("/payments/1")
        .await
        .unwrap();
    gw.assert_metric(
        r#"certgate_requests_total{code="403",method="GET",route="payments"}"#,
        1.0,
    )
    .await;
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).await.success());
    assert!(inv_path.exists(), "saved on shutdown");

    let gw = Gateway::start(&pki, &config(&up, section)).await;
    let inv = inventory(&gw, "").await;
    assert_eq!(
        subjects(&inv),
        ["CN=reader,O=Example", "CN=writer,O=Example"]
    );
    assert_eq!(inv["identities"][0]["requests_allowed"], 2);
    assert_eq!(
        inv["identities"][0]["routes"],
        serde_json::json!(["payments"])
    );
    assert_eq!(inv["identities"][1]["requests_denied"], 1);
    // New traffic adds to the restored counters.
    TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/payments/2")
        .await
        .unwrap();
    gw.assert_metric(
        r#"certgate_requests_total{code="200",method="GET",route="payments"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        inventory(&gw, "").await["identities"][0]["requests_allowed"],
        3
    );
    drop(gw);

    std::fs::write(&inv_path, "{\"version\": 1, \"identities\": [tru").unwrap();
    let gw = Gateway::start(&pki, &config(&up, section)).await;
    assert_eq!(
        inventory(&gw, "").await["count"],
        0,
        "a corrupt file is not fatal"
    );
    let aside: Vec<_> = std::fs::read_dir(inv_path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("inventory.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is set aside");
    gw.wait_for_log("inventory file unreadable; set aside")
        .await;
}

/// One route open to any verified client.
fn any_client_config(up: &Upstream) -> String {
    format!(
        "{}{}\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    )
}

#[tokio::test]
async fn the_admin_listener_refuses_foreign_hosts_and_wants_its_token() {
    use http::Method;
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.write("admin-token", "correct-horse-battery-staple\n");
    let gw = Gateway::start(&pki, &any_client_config(&up)).await;
    let a = gw.admin;
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    for (method, path) in [
        (Method::GET, "/inventory"),
        (Method::GET, "/anomalies"),
        (Method::POST, "/reload"),
    ] {
        let (code, _) =
            admin_request_with(a, method.clone(), path, &[("host", "evil.example:9901")])
                .await
                .unwrap();
        assert_eq!(code, 403, "{method} {path}");
        let (code, _) = admin_request_with(a, method.clone(), path, &[])
            .await
            .unwrap();
        assert_eq!(code, 403, "{method} {path} without Host");
        let (code, _) = admin_request_with(a, method, path, &[("host", "localhost")])
            .await
            .unwrap();
        assert!(code.is_success(), "{path} from localhost: {code}");
    }
    // Probes and metrics are not Host-bound (Prometheus scrapes by pod IP).
    let (code, _) = admin_request_with(a, Method::GET, "/metrics", &[("host", "10.1.2.3:9901")])
        .await
        .unwrap();
    assert_eq!(code, 200);
    gw.wait_for_log("admin request refused: Host").await;

    // With a token file (and an allowed host name), the token is required.
    let config = std::fs::read_to_string(pki.path("certgate.toml"))
        .unwrap()
        .replace(
            "[admin]\n",
            "[admin]\ntoken_file = \"admin-token\"\nallowed_hosts = [\"admin.internal\"]\n",
        );
    pki.write("certgate.toml", &config);
    let (code, _) = admin_request_with(a, Method::POST, "/reload", &[("host", "localhost")])
        .await
        .unwrap();
    assert_eq!(
        code, 200,
        "applied by the config in force, which wanted no token"
    );
    let (code, _) = admin_request_with(a, Method::POST, "/reload", &[("host", "localhost")])
        .await
        .unwrap();
    assert_eq!(code, 401, "from now on a token is needed");
    let bearer = "Bearer correct-horse-battery-staple";
    for (host, auth, want) in [
        ("localhost", None, 401),
        ("localhost", Some("Bearer wrong-token-0000000000"), 401),
        ("localhost", Some(bearer), 200),
        ("admin.internal:9901", Some(bearer), 200),
        ("evil.example", Some(bearer), 403),
    ] {
        let mut headers = vec![("host", host)];
        if let Some(v) = auth {
            headers.push(("authorization", v));
        }
        let (code, _) = admin_request_with(a, Method::GET, "/inventory", &headers)
            .await
            .unwrap();
        assert_eq!(code, want, "{host} {auth:?}");
    }
    let (code, _) = admin_request_with(a, Method::GET, "/metrics", &[("host", "localhost")])
        .await
        .unwrap();
    assert_eq!(code, 401, "metrics need the token too");
    let (code, _) = admin_request_with(a, Method::GET, "/healthz", &[("host", "x")])
        .await
        .unwrap();
    assert_eq!(code, 200, "probes stay open");
    assert!(
        !gw.logs().contains("correct-horse"),
        "the token is never logged"
    );
}

#[tokio::test]
async fn with_client_ca_the_admin_listener_speaks_tls_and_wants_an_operator_certificate() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ops = Ca::root("Ops CA").unwrap();
    pki.write("ops-ca.pem", &ops.cert_pem);
    pki.client(&ops, "operator", LeafSpec::client("operator"));
    pki.client(&pki.root, "workload", workload("workload"));
    let gw = Gateway::start(&pki, &any_client_config(&up)).await;
    let a = gw.admin;
    // A client_ca that is not a CA bundle: check names the key, a reload keeps plain HTTP.
    let config = std::fs::read_to_string(pki.path("certgate.toml")).unwrap();
    pki.write("not-a-ca.pem", "hello\n");
    let broken = config.replace("[admin]\n", "[admin]\nclient_ca = \"not-a-ca.pem\"\n");
    let (code, _, err) = run_cli(&[
        "check",
        "--config",
        pki.write("broken.toml", &broken).to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("admin.client_ca"), "{err}");
    pki.write("certgate.toml", &broken);
    let (code, _) = admin_post(a, "/reload").await;
    assert_eq!(code, 422, "a bad client_ca is refused");
    // Now a good one, applied by a reload over plain HTTP: new admin connections speak TLS.
    pki.write(
        "certgate.toml",
        &config.replace("[admin]\n", "[admin]\nclient_ca = \"ops-ca.pem\"\n"),
    );
    let (code, _) = admin_post(a, "/reload").await;
    assert_eq!(code, 200);
    assert!(
        admin_get(a, "/healthz").await.is_err(),
        "plain HTTP is no longer answered"
    );
    // Probes need no certificate; the protected endpoints want the operator's.
    let anonymous = TlsClient::new(&pki, a, None);
    assert_eq!(anonymous.get("/healthz").await.unwrap().status, 200);
    assert_eq!(anonymous.get("/readyz").await.unwrap().status, 200);
    for path in ["/metrics", "/inventory", "/anomalies"] {
        assert_eq!(anonymous.get(path).await.unwrap().status, 403, "{path}");
    }
    let operator = TlsClient::new(&pki, a, Some("operator"));
    for path in ["/metrics", "/inventory", "/anomalies"] {
        assert_eq!(operator.get(path).await.unwrap().status, 200, "{path}");
    }
    let reload = http::Request::post("/reload")
        .header("host", "localhost")
        .body(TestBody::empty())
        .unwrap();
    assert_eq!(operator.send(reload).await.unwrap().status, 200);
    // The Host check still applies with a certificate.
    let rebinding = http::Request::get("/inventory")
        .header("host", "evil.example")
        .body(TestBody::empty())
        .unwrap();
    assert_eq!(operator.send(rebinding).await.unwrap().status, 403);
    // A certificate from the data-plane CA is not an operator's: the handshake fails.
    assert!(
        TlsClient::new(&pki, a, Some("workload"))
            .get("/metrics")
            .await
            .is_err()
    );
    gw.wait_for_log("admin request refused: no client certificate")
        .await;
}
