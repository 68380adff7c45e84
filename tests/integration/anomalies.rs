//! Anomaly signals: each kind raised by the traffic that should raise it, logged on
//! `certgate::anomaly`, counted, and listed by `GET /anomalies`; ordinary traffic raises none.

use std::time::{Duration, Instant};

use crate::common::*;

fn config(up: &str) -> String {
    format!(
        r#"{}{}
[anomaly]
window = "1m"
distinct_source_ips = 2
denial_burst = 3
spike_factor = 3
spike_min_requests = 15
spike_interval = "1s"
learning_period = "1s"

[[routes]]
name = "secret"
path_prefix = "/secret"
upstream = "up"
allow = [{{ uri = "{}" }}]

[[routes]]
name = "open"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
        spiffe("admin"),
    )
}

async fn get(c: &TlsClient, path: &str) -> u16 {
    c.get(path).await.expect("exchange").status.as_u16()
}

async fn anomalies(gw: &Gateway, query: &str) -> serde_json::Value {
    let (code, body) = admin_get(gw.admin, &format!("/anomalies{query}"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The signals of one kind, as (subject, route).
fn of_kind(all: &serde_json::Value, kind: &str) -> Vec<(String, String)> {
    all["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            (
                e["subject"].as_str().unwrap_or("").to_string(),
                e["route"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_kind_is_raised_by_its_pattern_and_ordinary_traffic_raises_none() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    for name in ["copied", "prober", "burster", "steady"] {
        pki.client(&pki.root, name, workload(name));
    }
    let gw = Gateway::start(&pki, &config(&up.url())).await;
    let started = Instant::now();

    // A copied key: one certificate from three addresses (more than 2).
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let c = TlsClient::new(&pki, gw.addr, Some("copied")).with_source(src);
        assert_eq!(get(&c, "/data").await, 200);
    }
    // Probing: four refusals (more than 3).
    let prober = TlsClient::new(&pki, gw.addr, Some("prober"));
    for _ in 0..4 {
        assert_eq!(get(&prober, "/secret/x").await, 403);
    }
    // A burst against its own habit: two requests a second for three seconds, then twenty.
    // Beside it, a steady client at the same pace raises nothing.
    let burster = TlsClient::new(&pki, gw.addr, Some("burster"));
    let steady = TlsClient::new(&pki, gw.addr, Some("steady"));
    for _ in 0..7 {
        assert_eq!(get(&burster, "/data").await, 200);
        assert_eq!(get(&steady, "/data").await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..20 {
        assert_eq!(get(&burster, "/data").await, 200);
    }
    assert_eq!(get(&steady, "/data").await, 200);
    // After its learning second, the copied certificate reaches for a route it never called.
    assert!(started.elapsed() > Duration::from_secs(1));
    let copied = TlsClient::new(&pki, gw.addr, Some("copied")).with_source("127.0.0.2");
    assert_eq!(get(&copied, "/secret/keys").await, 403);

    let all = anomalies(&gw, "").await;
    let subject = |name: &str| format!("CN={name},O=Example");
    let shared = of_kind(&all, "shared_credential");
    assert_eq!(shared, [(subject("copied"), "open".to_string())], "{all:#}");
    let probing = of_kind(&all, "denial_burst");
    assert_eq!(
        probing,
        [(subject("prober"), "secret".to_string())],
        "{all:#}"
    );
    let spikes = of_kind(&all, "rate_spike");
    assert_eq!(
        spikes,
        [(subject("burster"), "open".to_string())],
        "{all:#}"
    );
    let new_routes = of_kind(&all, "new_route");
    assert_eq!(
        new_routes,
        [(subject("copied"), "secret".to_string())],
        "{all:#}"
    );
    assert_eq!(all["count"], 4, "{all:#}");
    assert!(!all.to_string().contains("CN=steady"), "{all:#}");
    let first = &all["anomalies"][0];
    assert_eq!(first["kind"], "new_route", "newest first");
    assert_eq!(first["source_ip"], "127.0.0.2");
    assert_eq!(
        first["identity"].as_str().unwrap().len(),
        64,
        "leaf SHA-256"
    );

    for kind in [
        "shared_credential",
        "denial_burst",
        "rate_spike",
        "new_route",
    ] {
        gw.assert_metric(&format!("certgate_anomalies_total{{kind=\"{kind}\"}}"), 1.0)
            .await;
    }
    let only = anomalies(&gw, "?kind=denial_burst").await;
    assert_eq!(only["count"], 1);
    let (code, body) = admin_get(gw.admin, "/anomalies?kind=nope").await.unwrap();
    assert_eq!(code, 400, "{body}");
    gw.wait_for_log("\"target\":\"certgate::anomaly\"").await;
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("certgate::anomaly") && l.contains("denial_burst"))
        .expect("WARN line");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    assert!(line.contains("CN=prober"), "{line}");
    assert!(line.contains("refused requests within 1m"), "{line}");

    // A reload keeps what was learned: no second new_route for the same route.
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&copied, "/secret/keys").await, 403);
    assert_eq!(of_kind(&anomalies(&gw, "").await, "new_route").len(), 1);
}

#[test]
fn check_refuses_bad_thresholds_naming_the_key() {
    let pki = Pki::new();
    let text =
        config("http://127.0.0.1:1").replace("distinct_source_ips = 2", "distinct_source_ips = 0");
    let p = pki.write(
        "certgate.toml",
        &format!("[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{text}"),
    );
    let (code, out, err) = run_cli(&["check", "--config", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains("anomaly.distinct_source_ips: must be between 1 and 256"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn a_copied_api_key_and_guessed_keys_raise_signals() {
    let anomaly = "\n[anomaly]\nwindow = \"1m\"\ndistinct_source_ips = 2\ndenial_burst = 3\n";
    let s = crate::api_keys::KeyGateway::start_with("", anomaly).await;
    // One key used from three addresses: a copied key, named by its id and owner.
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let c = s.anonymous().with_source(src);
        let r = s.call(&c, "/orders/1", &[("x-api-key", &s.key)]).await;
        assert_eq!(r.status, 200);
    }
    // Guessing: four wrong keys from one address count against that address.
    let guesser = s.anonymous().with_source("127.0.0.9");
    for n in 0..4 {
        let wrong = format!("not-a-key-{n}");
        let r = s
            .call(&guesser, "/orders/1", &[("x-api-key", &wrong)])
            .await;
        assert_eq!(r.status, 401);
    }
    let all = anomalies(&s.gw, "").await;
    let events = all["anomalies"].as_array().unwrap();
    let shared = events
        .iter()
        .find(|e| e["kind"] == "shared_credential")
        .unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(shared["identity"], format!("api_key:{}", s.id));
    assert_eq!(shared["owner"], "team-erp");
    let guessing = events
        .iter()
        .find(|e| e["kind"] == "denial_burst")
        .unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(guessing["identity"], "127.0.0.9");
    assert!(!all.to_string().contains(&s.key), "never the key");
}
