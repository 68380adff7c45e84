//! The register of every credential kind: API keys listed from the keys file before their
//! first use, their use counted per route and per day, and the migration report that says who
//! still holds a key and whether they already have a certificate.

use std::time::Duration;

use serde_json::Value;

use crate::api_keys::KeyGateway;
use crate::common::*;

/// Saved on stop (and every second) so the CLI reports read it.
const INVENTORY: &str = "\n[inventory]\npath = \"inventory.json\"\nflush_interval = \"1s\"\n";

fn api_key_entries(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["identities"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn keys_are_registered_before_use_and_the_migration_report_shows_who_still_uses_them() {
    let s = KeyGateway::start_with("", INVENTORY).await;
    let admin = s.gw.admin;
    // Listed before anyone used it: owner, sunset, never seen — and never the key.
    let (status, body) = admin_get(admin, "/inventory?kind=api_key").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let keys = api_key_entries(&body);
    assert_eq!(keys.len(), 1, "{body}");
    let k = &keys[0];
    assert_eq!(k["kind"], "api_key");
    assert_eq!(k["subject"], s.id.as_str());
    assert_eq!(k["owner"], "team-erp");
    assert_eq!(k["serial"], "hmac-sha256");
    assert_eq!(
        (k["first_seen"].as_i64(), k["last_seen"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(k["not_after"].as_i64(), Some(4_078_598_400), "2099-03-31");
    assert!(!body.contains(&s.key) && !body.contains("cgk_"), "{body}");
    s.gw.assert_metric(
        "certgate_credentials{kind=\"api_key\",owner=\"team-erp\",state=\"active\"}",
        1.0,
    )
    .await;
    let (status, body) = admin_get(admin, "/inventory?kind=password").await.unwrap();
    assert_eq!(status, 400, "{body}");

    // Three uses on orders, one on a route the key does not list (refused: counted as such).
    let client = s.anonymous();
    for _ in 0..3 {
        let r = s.call(&client, "/orders/1", &[("x-api-key", &s.key)]).await;
        assert_eq!(r.status, 200);
    }
    let r = s
        .call(&client, "/invoices/1", &[("x-api-key", &s.key)])
        .await;
    assert_eq!(r.status, 403);
    let (_, body) = admin_get(admin, "/inventory?kind=api_key").await.unwrap();
    let k = &api_key_entries(&body)[0];
    assert_eq!(
        (
            k["requests_allowed"].as_u64(),
            k["requests_denied"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(k["routes_allowed"], serde_json::json!(["orders"]));
    assert!(k["last_seen"].as_i64().unwrap() > 0);
    // Certificates and keys are told apart.
    let (_, certs) = admin_get(admin, "/inventory?kind=certificate")
        .await
        .unwrap();
    assert!(api_key_entries(&certs).is_empty(), "{certs}");

    // team-erp's certificate is used once: its key can be cut over.
    let erp = TlsClient::new(&s.pki, s.gw.addr, Some("erp"));
    assert_eq!(s.call(&erp, "/orders/1", &[]).await.status, 200);
    let config = s.gw_config();
    let config = config.to_str().unwrap();
    let migration = || {
        let (_, out, err) = run_cli(&[
            "inventory",
            "--config",
            config,
            "--migration",
            "--format",
            "json",
        ]);
        serde_json::from_str::<Value>(&out).map_err(|e| format!("{e}: {out}{err}"))
    };
    wait_for(
        "the inventory file with both uses",
        Duration::from_secs(10),
        || async {
            let v = migration()?;
            let row = &v["api_keys"][0];
            match (&row["uses_30d"], &row["owner_uses_certificate"]) {
                (Value::Number(n), Value::Bool(true)) if n.as_u64() == Some(4) => Ok(()),
                _ => Err(v.to_string()),
            }
        },
    )
    .await;
    let v = migration().unwrap();
    let row = &v["api_keys"][0];
    assert_eq!(row["key_id"], s.id.as_str());
    assert_eq!(row["owner"], "team-erp");
    assert_eq!(row["state"], "active");
    assert_eq!(row["sunset"], "2099-03-31T00:00:00Z");
    assert!(row["days_to_sunset"].as_i64().unwrap() > 25_000);
    assert!(row["last_use"].is_string());
    let (code, table, err) = run_cli(&["inventory", "--config", config, "--migration"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("KEY ID") && table.contains(&s.id), "{table}");
    assert!(
        table.contains("1 API key(s); 0 held by owners without a certificate yet"),
        "{table}"
    );
    // The register as a table: every kind, with its KIND column.
    let (_, table, _) = run_cli(&["inventory", "--config", config, "--kind", "api_key"]);
    assert!(
        table.contains("api_key") && table.contains("1 credential(s)"),
        "{table}"
    );
    let (code, _, err) = run_cli(&["inventory", "--config", config, "--kind", "password"]);
    assert_ne!(code, 0);
    assert!(err.contains("password"), "{err}");
    // `keys list` shows the last use.
    let (code, list, err) = run_cli(&["keys", "list", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let line = list.lines().find(|l| l.contains(&s.id)).unwrap();
    assert!(line.trim_end().ends_with('Z'), "a time in LAST USE: {line}");
    for out in [&table, &list, &v.to_string()] {
        assert!(!out.contains(&s.key), "the key never appears in a report");
    }
}
