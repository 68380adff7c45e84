//! Credential owners: the owners file, the unowned / lifetime policies, the owner in the log,
//! the inventory and the metrics, hot reload, and `certgate inventory` reports.

use std::time::Duration;

use certgate_testpki::LeafSpec;

use crate::common::*;

const DAY: i64 = 86400;

const OWNERS: &str = r#"
[[owner]]
name = "payments"
contact = "payments-oncall@example.com"
purpose = "card settlement"
max_lifetime = "90d"
match = [
  { uri = "spiffe://example.org/ns/test/sa/pay" },
  { uri = "spiffe://example.org/ns/test/sa/pay-legacy" },
  { ou = "payments" },
]

[[owner]]
name = "catch-all-pay"
match = [ { cn = "pay" } ]
"#;

fn config(up: &str, policy: &str) -> String {
    format!(
        r#"[reload]
poll_interval = "200ms"

[owners]
file = "owners.toml"
{policy}

[inventory]
path = "inventory.json"
flush_interval = "1h"

[anomaly]
denial_burst = 1

{}{}
[[routes]]
name = "api"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
    )
}

fn leaf(pki: &Pki, name: &str, days: i64) {
    pki.client(
        &pki.root,
        name,
        LeafSpec {
            not_before_secs: -3600,
            not_after_secs: days * DAY,
            ..workload(name)
        },
    );
}

async fn code(pki: &Pki, gw: &Gateway, who: &str) -> u16 {
    TlsClient::new(pki, gw.addr, Some(who))
        .get("/x")
        .await
        .expect("exchange")
        .status
        .as_u16()
}

/// Rewrites the `[owners]` policy lines and reloads.
async fn set_policy(pki: &Pki, gw: &Gateway, up: &str, policy: &str) {
    let path = pki.path("certgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let head = &text[..text.find("[reload]").unwrap()];
    std::fs::write(&path, format!("{head}{}", config(up, policy))).unwrap();
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn owners_policies_log_metrics_and_hot_reload() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    leaf(&pki, "pay", 30); // owned by payments (uri), 30 days: fine
    leaf(&pki, "pay-legacy", 400); // owned by payments, 400 days > 90: lifetime violation
    leaf(&pki, "stray", 30); // nobody's
    pki.write("owners.toml", OWNERS);
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;

    // Default policies: everything allowed, the owner recorded.
    for who in ["pay", "pay-legacy", "stray"] {
        assert_eq!(code(&pki, &gw, who).await, 200, "{who}");
    }
    gw.wait_for_log("\"client_owner\":\"unowned\"").await;
    gw.wait_for_log("\"client_owner\":\"payments\"").await;
    gw.assert_metric(
        r#"certgate_credentials{kind="certificate",owner="payments",state="active"}"#,
        2.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_credentials{kind="certificate",owner="unowned",state="active"}"#,
        1.0,
    )
    .await;
    let (_, inv) = admin_get(gw.admin, "/inventory?unowned").await.unwrap();
    let inv: serde_json::Value = serde_json::from_str(&inv).unwrap();
    assert_eq!(inv["count"], 1, "{inv:#}");
    assert_eq!(inv["identities"][0]["subject"], "CN=stray,O=Example");
    let (_, inv) = admin_get(gw.admin, "/inventory?lifetime_violations=true")
        .await
        .unwrap();
    let inv: serde_json::Value = serde_json::from_str(&inv).unwrap();
    assert_eq!(inv["count"], 1, "{inv:#}");
    assert_eq!(inv["identities"][0]["owner"], "payments");
    assert_eq!(inv["identities"][0]["lifetime_violation"], true);
    let (status, body) = admin_get(gw.admin, "/inventory?owner=x").await.unwrap();
    assert_eq!(status, 400, "{body}");

    // Deny both: 403 for the stray and the overlong certificate, on every route.
    set_policy(
        &pki,
        &gw,
        &up.url(),
        "unowned = \"deny\"\nlifetime_violation = \"deny\"",
    )
    .await;
    assert_eq!(code(&pki, &gw, "stray").await, 403);
    assert_eq!(code(&pki, &gw, "pay-legacy").await, 403);
    assert_eq!(code(&pki, &gw, "pay-legacy").await, 403);
    assert_eq!(code(&pki, &gw, "pay").await, 200);
    // Anomaly signals carry the owner too.
    let (_, body) = admin_get(gw.admin, "/anomalies?kind=denial_burst")
        .await
        .unwrap();
    let signals: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(signals["anomalies"][0]["owner"], "payments", "{signals:#}");
    assert_eq!(
        signals["anomalies"][0]["subject"],
        "CN=pay-legacy,O=Example"
    );
    gw.wait_for_log("\"rule\":\"owners.lifetime_violation\"")
        .await;
    gw.wait_for_log("\"rule\":\"owners.unowned\"").await;
    let explain = |who: &str| {
        let config = pki.path("certgate.toml");
        let cert = pki.path(&format!("{who}.pem"));
        run_cli(&[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--path",
            "/x",
        ])
    };
    let (code_, out, _) = explain("stray");
    assert_eq!(code_, 3, "{out}");
    assert!(out.contains("owner     none matches"), "{out}");
    assert!(out.contains("denied -> 403 by owners.unowned"), "{out}");
    let (code_, out, _) = explain("pay");
    assert_eq!(code_, 0, "{out}");
    assert!(
        out.contains("owner     payments (payments-oncall@example.com), max_lifetime 90d"),
        "{out}"
    );

    // Audit: forwarded, logged and counted as would_deny.
    set_policy(
        &pki,
        &gw,
        &up.url(),
        "unowned = \"audit\"\nlifetime_violation = \"audit\"",
    )
    .await;
    let seen = up.seen().len();
    assert_eq!(code(&pki, &gw, "stray").await, 200);
    assert_eq!(code(&pki, &gw, "pay-legacy").await, 200);
    assert_eq!(up.seen().len(), seen + 2);
    gw.assert_metric(
        r#"certgate_authz_decisions_total{decision="would_deny",route="api"}"#,
        2.0,
    )
    .await;
    gw.wait_for_log("\"would\":\"owner\"").await;
    gw.wait_for_log("\"owner_finding\":\"unowned\"").await;

    // The owners file is watched: giving the stray an owner takes effect without a reload call.
    set_policy(&pki, &gw, &up.url(), "unowned = \"deny\"").await;
    assert_eq!(code(&pki, &gw, "stray").await, 403);
    pki.write(
        "owners.toml",
        &format!("{OWNERS}\n[[owner]]\nname = \"strays\"\nmatch = [ {{ cn = \"stray\" }} ]\n"),
    );
    wait_for(
        "the owners file change to apply",
        Duration::from_secs(10),
        || async {
            match code(&pki, &gw, "stray").await {
                200 => Ok(()),
                c => Err(format!("{c}; log:\n{}", gw.logs())),
            }
        },
    )
    .await;
    gw.wait_for_log("\"client_owner\":\"strays\"").await;
    gw.assert_metric(
        r#"certgate_credentials{kind="certificate",owner="strays",state="active"}"#,
        1.0,
    )
    .await;
}

#[test]
fn check_refuses_bad_owners_files_naming_file_and_key() {
    let pki = Pki::new();
    let config = pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{}",
            config("http://127.0.0.1:1", "")
        ),
    );
    let check = || run_cli(&["check", "--config", config.to_str().unwrap()]);
    let owners_path = pki.path("owners.toml");
    let shown = owners_path.display().to_string();
    for (text, needle) in [
        (
            "[[owner]]\nname = \"a\"\nmatch = [ { cn = \"x\" } ]\n[[owner]]\nname = \"b\"\nmatch = [ { uri = \"\" } ]\n",
            format!("{shown}: owner[1].match[0]: uri: must not be empty"),
        ),
        (
            "[[owner]]\nname = \"a\"\nmatch = []\n",
            format!("{shown}: owner[0].match: give at least one entry"),
        ),
        (
            "[[owner]]\nname = \"a\"\nmatch = [ { cn = \"x\" } ]\n[[owner]]\nname = \"a\"\nmatch = [ { cn = \"y\" } ]\n",
            format!("{shown}: owner[1].name: \"a\" is used by an earlier owner"),
        ),
        (
            "[[owner]]\nname = \"a\"\nmatch = [ { cn = \"x\" } ]\nteam = \"z\"\n",
            format!("{shown}: "),
        ),
        (
            "[[owner]]\nname = \"a\"\nmax_lifetime = \"soon\"\nmatch = [ { cn = \"x\" } ]\n",
            "write a duration".to_string(),
        ),
    ] {
        std::fs::write(&owners_path, text).unwrap();
        let (code, out, err) = check();
        assert_ne!(code, 0, "{text}");
        assert!(
            format!("{out}{err}").contains(&needle),
            "{needle}\n{out}{err}"
        );
    }
    std::fs::remove_file(&owners_path).unwrap();
    let (code, out, err) = check();
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains(&format!("{shown}: cannot read")),
        "{out}{err}"
    );
    std::fs::write(&owners_path, OWNERS).unwrap();
    let (code, out, err) = check();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("owners     2 owner(s) (unowned: allow, lifetime_violation: allow)"),
        "{out}"
    );
}

/// An inventory file as a gateway saves it, with times chosen for each filter.
fn inventory_file(now: i64) -> String {
    let rec = |cn: &str, owner: Option<&str>, not_before: i64, not_after: i64, last_seen: i64| {
        let mut r = serde_json::json!({
            "sha256": format!("{:064x}", cn.len() * 7 + cn.as_bytes()[0] as usize),
            "subject": format!("CN={cn}"),
            "issuer": "CN=Test Root",
            "serial": "0a",
            "not_before": not_before,
            "not_after": not_after,
            "first_seen": now - 60 * DAY,
            "last_seen": last_seen,
            "requests_allowed": 5,
            "requests_denied": 1,
            "routes": ["api"],
            "routes_allowed": ["api"],
            "routes_refused": [],
        });
        if let Some(o) = owner {
            r["owner"] = serde_json::json!(o);
        }
        r
    };
    serde_json::json!({
        "version": 1,
        "identities": [
            rec("fresh", Some("payments"), now - DAY, now + 60 * DAY, now - 60),
            rec("expiring", Some("payments"), now - 70 * DAY, now + 10 * DAY, now - 3600),
            rec("overlong", Some("payments"), now - DAY, now + 700 * DAY, now - 60),
            rec("idle", Some("catch-all-pay"), now - DAY, now + 60 * DAY, now - 45 * DAY),
            rec("stray", None, now - DAY, now + 60 * DAY, now - 60),
        ]
    })
    .to_string()
}

#[test]
fn reports_in_every_format_with_every_filter() {
    let pki = Pki::new();
    pki.write("owners.toml", OWNERS);
    let config = pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{}",
            config("http://127.0.0.1:1", "")
        ),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    pki.write("inventory.json", &inventory_file(now));
    let report = |args: &[&str]| {
        let mut all = vec!["inventory", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let (code, out, err) = run_cli(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    let subjects = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&report(&all)).unwrap();
        v["identities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["subject"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("CN=")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        subjects(&[]),
        ["expiring", "fresh", "idle", "overlong", "stray"]
    );
    assert_eq!(subjects(&["--unowned"]), ["stray"]);
    assert_eq!(subjects(&["--expiring", "30d"]), ["expiring"]);
    assert_eq!(subjects(&["--lifetime-violations"]), ["overlong"]);
    assert_eq!(subjects(&["--unused", "30d"]), ["idle"]);
    assert_eq!(subjects(&["--route", "api", "--unowned"]), ["stray"]);
    assert!(subjects(&["--route", "other"]).is_empty());

    let json: serde_json::Value =
        serde_json::from_str(&report(&["--format", "json", "--expiring", "30d"])).unwrap();
    let r = &json["identities"][0];
    assert_eq!(r["owner"], "payments");
    let days = r["expires_in_days"].as_i64().unwrap();
    assert!((9..=10).contains(&days), "{days}");
    assert_eq!(r["lifetime_days"], 80);
    assert_eq!(r["lifetime_violation"], false);

    let csv = report(&["--format", "csv", "--lifetime-violations"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0]
            .starts_with("subject,owner,state,expires,lifetime,last_seen,allowed,refused,routes"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with("CN=overlong,payments,active,"),
        "{csv}"
    );
    assert!(lines[1].contains(",701!,"), "{csv}");

    let table = report(&["--unowned"]);
    assert!(table.contains("SUBJECT"), "{table}");
    assert!(table.contains("CN=stray"), "{table}");
    assert!(table.contains("unowned"), "{table}");
    assert!(
        table.contains("in 59 days") || table.contains("in 60 days"),
        "{table}"
    );
    assert!(table.contains("1 certificate(s)"), "{table}");
    let all = report(&[]);
    assert!(all.contains("(too long)"), "{all}");
    assert!(all.contains("45 days ago"), "{all}");

    // Without [inventory] path there is nothing to report: say so.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("path = \"inventory.json\"\n", "");
    std::fs::write(&config, text).unwrap();
    let (code, _, err) = run_cli(&["inventory", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("inventory.path is not set"), "{err}");
}
