//! Pending CRLs (issue 29): the most common PKI shape — the trust store holds the root, clients
//! present leaf + intermediate, `crls` lists the root's and the intermediate's CRL, and the
//! intermediate is not configured. The intermediate's CRL is verified against the intermediate
//! a client presents, once per CA key, and used for that CA only if it verifies.

use std::time::Duration;

use certgate_testpki::{Ca, Issued};

use crate::common::*;

const DAY: Duration = Duration::from_secs(86400);

/// Writes `<name>.pem` as the chain a client presents (leaf, then `cas`) and `<name>-key.pem`.
fn present(pki: &Pki, name: &str, leaf: &Issued, cas: &[&Ca]) {
    let mut chain = leaf.cert_pem.clone();
    for ca in cas {
        chain.push_str(&ca.cert_pem);
    }
    pki.write(&format!("{name}.pem"), &chain);
    pki.write(&format!("{name}-key.pem"), &leaf.key_pem);
}

fn config(up: &str, unknown: &str, crls: &str) -> String {
    format!(
        "[reload]\nwatch = false\n\n{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth(
            "require",
            &format!("crls = [{crls}]\nunknown_revocation = \"{unknown}\"")
        ),
        upstream_section("up", up, ""),
    )
}

/// The root's empty CRL and the issuing CA's, revoking `revoked`: `root.crl`, `issuing.crl`.
fn write_crls(pki: &Pki, issuing: &Ca, revoked: &Issued) {
    pki.write("root.crl", &pki.root.crl(&[], DAY).unwrap());
    pki.write(
        "issuing.crl",
        &issuing.crl(&[revoked.serial()], DAY).unwrap(),
    );
}

async fn served(pki: &Pki, gw: &Gateway, who: &str) -> bool {
    matches!(
        TlsClient::new(pki, gw.addr, Some(who)).get("/x").await,
        Ok(r) if r.status == 200
    )
}

fn usable(pki: &Pki, name: &str) -> String {
    format!(
        "certgate_crl_usable{{source=\"{}\"}}",
        pki.path(name).display()
    )
}

#[tokio::test]
async fn an_intermediates_crl_is_verified_against_the_intermediate_clients_present() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let issuing = pki.root.intermediate("Issuing CA").unwrap();
    let ok = issuing.issue(&workload("ok")).unwrap();
    let revoked = issuing.issue(&workload("revoked")).unwrap();
    present(&pki, "ok", &ok, &[&issuing]);
    present(&pki, "revoked", &revoked, &[&issuing]);
    write_crls(&pki, &issuing, &revoked);
    let gw = Gateway::start(
        &pki,
        &config(&up.url(), "deny", r#""root.crl", "issuing.crl""#),
    )
    .await;

    // check: one warning naming the file and how to verify it at load, and one verdict.
    let (code, out, err) = run_cli(&[
        "check",
        "--config",
        pki.path("certgate.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.trim_end().ends_with(&format!(
        "config OK: {}",
        pki.path("certgate.toml").display()
    )));
    assert!(err.contains("client_auth.crls[1]"), "{err}");
    assert!(err.contains("issuing.crl"), "{err}");
    assert!(err.contains("CN=Issuing CA is pending"), "{err}");
    assert!(err.contains("client_auth.intermediates"), "{err}");
    assert!(!err.contains("error"), "{err}");

    assert!(
        served(&pki, &gw, "ok").await,
        "a good client of the intermediate"
    );
    assert!(
        !served(&pki, &gw, "revoked").await,
        "revoked in the intermediate's CRL"
    );
    assert!(served(&pki, &gw, "ok").await);
    gw.assert_metric(&usable(&pki, "issuing.crl"), 1.0).await;
    gw.assert_metric("certgate_tls_handshakes_total{result=\"revoked\"}", 1.0)
        .await;
    // Verified once for the intermediate's key, not per handshake, and not again after a
    // reload that keeps the CRL.
    gw.wait_for_log("pending CRL verified").await;
    let (status, _) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200);
    assert!(served(&pki, &gw, "ok").await);
    assert!(!served(&pki, &gw, "revoked").await);
    assert_eq!(
        gw.logs().matches("pending CRL verified").count(),
        1,
        "{}",
        gw.logs()
    );

    // explain with the chain file verifies the same way and says so.
    let (_, out, err) = run_cli(&[
        "explain",
        "--config",
        pki.path("certgate.toml").to_str().unwrap(),
        "--cert",
        pki.path("revoked.pem").to_str().unwrap(),
        "--path",
        "/x",
    ]);
    assert!(
        out.contains("handshake would be refused: revoked"),
        "{out}{err}"
    );
    assert!(err.contains("issuing.crl"), "{err}");
    assert!(
        out.contains("verified against the presented CN=Issuing CA"),
        "{out}"
    );
}

#[tokio::test]
async fn a_pending_crl_its_ca_did_not_sign_is_unusable_for_that_ca_only() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.root.intermediate("Good CA").unwrap();
    let real = pki.root.intermediate("Twin CA").unwrap();
    // Same name, another key: its CRL is not the real CA's.
    let impostor = Ca::root("Twin CA").unwrap();
    let g = good.issue(&workload("g")).unwrap();
    let t = real.issue(&workload("t")).unwrap();
    present(&pki, "g", &g, &[&good]);
    present(&pki, "t", &t, &[&real]);
    pki.write("root.crl", &pki.root.crl(&[], DAY).unwrap());
    pki.write("good.crl", &good.crl(&[], DAY).unwrap());
    pki.write("twin.crl", &impostor.crl(&[], DAY).unwrap());
    let gw = Gateway::start(
        &pki,
        &config(&up.url(), "deny", r#""root.crl", "good.crl", "twin.crl""#),
    )
    .await;
    gw.assert_metric(&usable(&pki, "twin.crl"), 1.0).await;
    assert!(!served(&pki, &gw, "t").await, "revocation unknown: refused");
    assert!(!served(&pki, &gw, "t").await);
    assert!(
        served(&pki, &gw, "g").await,
        "the other intermediate keeps working"
    );
    gw.assert_metric(&usable(&pki, "twin.crl"), 0.0).await;
    gw.assert_metric(&usable(&pki, "good.crl"), 1.0).await;
    gw.wait_for_log("pending CRL does not verify").await;
    let logs = gw.logs();
    assert_eq!(
        logs.matches("pending CRL does not verify").count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("bad signature (not signed by CN=Twin CA)"),
        "{logs}"
    );
    assert!(logs.contains("\"level\":\"ERROR\""), "{logs}");
    // Still unusable after a reload that keeps the same file.
    let (status, _) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200);
    gw.assert_metric(&usable(&pki, "twin.crl"), 0.0).await;
}

#[tokio::test]
async fn a_decoy_with_the_ca_name_in_the_chain_does_not_hide_a_revocation() {
    // With unknown_revocation = "allow", a chain that made the pending CRL look unusable would
    // let a revoked client in: the CRL must be checked against the CA that signed the leaf.
    let pki = Pki::new();
    let up = Upstream::start().await;
    let issuing = pki.root.intermediate("Issuing CA").unwrap();
    let decoy = Ca::root("Issuing CA").unwrap();
    let revoked = issuing.issue(&workload("revoked")).unwrap();
    present(&pki, "revoked", &revoked, &[&decoy, &issuing]);
    present(&pki, "plain", &revoked, &[&issuing]);
    write_crls(&pki, &issuing, &revoked);
    let gw = Gateway::start(
        &pki,
        &config(&up.url(), "allow", r#""root.crl", "issuing.crl""#),
    )
    .await;
    assert!(
        !served(&pki, &gw, "revoked").await,
        "decoy first in the chain"
    );
    assert!(!served(&pki, &gw, "plain").await);
    gw.assert_metric("certgate_tls_handshakes_total{result=\"revoked\"}", 2.0)
        .await;
    gw.assert_metric(&usable(&pki, "issuing.crl"), 1.0).await;
}
