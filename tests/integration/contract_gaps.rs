//! What verification of the contract found missing (issue 29): inventory entries with their
//! owner's contact and purpose, and the `revoked` state of a certificate revoked after it was
//! seen; the inventory's flush interval after a reload; `certgate inventory` before the
//! gateway wrote its file.

use std::time::Duration;

use crate::common::*;

const OWNERS: &str = r#"
[[owner]]
name = "payments"
contact = "payments-oncall@example.com"
purpose = "card settlement"
match = [ { uri = "spiffe://example.org/ns/test/sa/a" } ]
"#;

fn config(up: &str, inventory: &str) -> String {
    format!(
        "[reload]\nwatch = false\n\n[owners]\nfile = \"owners.toml\"\n\n{inventory}\n{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", "crls = [\"root.crl\"]"),
        upstream_section("up", up, ""),
    )
}

async fn status(pki: &Pki, gw: &Gateway, who: &str) -> Option<u16> {
    TlsClient::new(pki, gw.addr, Some(who))
        .get("/x")
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

#[tokio::test]
async fn the_inventory_names_owners_and_shows_a_certificate_revoked_after_it_was_seen() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let a = pki.client(&pki.root, "a", workload("a"));
    pki.client(&pki.root, "b", workload("b"));
    pki.write("owners.toml", OWNERS);
    let day = Duration::from_secs(86400);
    pki.write("root.crl", &pki.root.crl(&[], day).unwrap());
    let mut gw = Gateway::start(
        &pki,
        &config(
            &up.url(),
            "[inventory]\npath = \"inventory.json\"\nflush_interval = \"1h\"\n",
        ),
    )
    .await;
    assert_eq!(status(&pki, &gw, "a").await, Some(200));
    assert_eq!(status(&pki, &gw, "b").await, Some(200));
    let (_, body) = admin_get(gw.admin, "/inventory").await.unwrap();
    let inv: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = |inv: &serde_json::Value, cn: &str| {
        inv["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"].as_str() == Some(&format!("CN={cn},O=Example")))
            .unwrap_or_else(|| panic!("{cn}: {inv}"))
            .clone()
    };
    let e = entry(&inv, "a");
    assert_eq!(e["owner"], "payments");
    assert_eq!(e["owner_contact"], "payments-oncall@example.com");
    assert_eq!(e["owner_purpose"], "card settlement");
    assert_eq!(e["state"], "active");
    assert!(e.get("revoked_at").is_none(), "{e}");
    assert!(entry(&inv, "b").get("owner_contact").is_none());

    // a is revoked: the reload that brings the CRL marks its entry.
    pki.write("root.crl", &pki.root.crl(&[a.serial()], day).unwrap());
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(status(&pki, &gw, "a").await, Some(200));
    let (_, body) = admin_get(gw.admin, "/inventory").await.unwrap();
    let inv: serde_json::Value = serde_json::from_str(&body).unwrap();
    let e = entry(&inv, "a");
    assert_eq!(e["state"], "revoked", "{e}");
    assert!(e["revoked_at"].as_i64().is_some(), "{e}");
    assert_eq!(entry(&inv, "b")["state"], "active");
    gw.assert_metric(
        "certgate_credentials{kind=\"certificate\",owner=\"payments\",state=\"revoked\"}",
        1.0,
    )
    .await;
    gw.assert_metric(
        "certgate_credentials{kind=\"certificate\",owner=\"unowned\",state=\"active\"}",
        1.0,
    )
    .await;

    // Saved at shutdown, and the report read from the file says the same.
    gw.signal("TERM");
    gw.wait_exit(Duration::from_secs(10)).await;
    let config = pki.path("certgate.toml");
    let (code, csv, err) = run_cli(&[
        "inventory",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(code, 0, "{err}");
    let header = csv.lines().next().unwrap();
    // Columns are only ever added at the end: `kind` came with the register of every kind.
    assert!(
        header.ends_with(",owner_contact,owner_purpose,kind"),
        "{header}"
    );
    let row = csv.lines().find(|l| l.contains("CN=a")).unwrap();
    assert!(row.contains(",payments,revoked,"), "{row}");
    assert!(
        row.ends_with(",payments-oncall@example.com,card settlement,certificate"),
        "{row}"
    );
    let (_, table, _) = run_cli(&["inventory", "--config", config.to_str().unwrap()]);
    assert!(table.contains("revoked"), "{table}");
}

#[tokio::test]
async fn a_reload_that_adds_an_inventory_file_writes_it_at_the_new_interval() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    pki.write("owners.toml", OWNERS);
    pki.write(
        "root.crl",
        &pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    // No file, the default interval (60 s).
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    assert_eq!(status(&pki, &gw, "a").await, Some(200));
    let config = pki.path("certgate.toml");
    // Before any file: `certgate inventory` says so instead of reporting nothing.
    let with_file = std::fs::read_to_string(&config).unwrap()
        + "\n[inventory]\npath = \"inventory.json\"\nflush_interval = \"1s\"\n";
    let reported = pki.write("report.toml", &with_file);
    let (code, out, err) = run_cli(&["inventory", "--config", reported.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("inventory.json: no inventory file yet"),
        "{err}"
    );
    assert!(!out.contains("certificate(s)"), "{out}");

    std::fs::write(&config, &with_file).unwrap();
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    let file = pki.path("inventory.json");
    wait_until(
        "the inventory file is written",
        Duration::from_secs(5),
        || file.exists(),
    )
    .await;
    let (code, out, err) = run_cli(&["inventory", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 certificate(s)"), "{out}");
}
