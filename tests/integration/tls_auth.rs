//! Client-certificate verification at the TLS layer: who gets through the handshake.

use std::time::Duration;

use certgate_testpki::{Ca, LeafSpec};

use crate::common::*;

const ROUTES: &str = r#"
[[routes]]
name = "all"
path_prefix = "/"
upstream = "up"
allow = [{ any = true }]
"#;

async fn gateway(pki: &Pki, client_auth_extra: &str, up: &Upstream) -> Gateway {
    let body = format!(
        "{}{}{ROUTES}",
        client_auth("require", client_auth_extra),
        upstream_section("up", &up.url(), "")
    );
    Gateway::start(pki, &body).await
}

async fn handshakes(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!(
        "certgate_tls_handshakes_total{{result=\"{result}\"}}"
    ))
    .await
}

/// A client presenting `cert` gets a 200 on a fresh connection.
async fn assert_served(pki: &Pki, gw: &Gateway, cert: Option<&str>) {
    let r = TlsClient::new(pki, gw.addr, cert).get("/x").await;
    assert_eq!(r.expect("served").status, 200, "{cert:?}");
}

/// A client presenting `cert` (by name; `None` for none) is refused at the TLS layer (at the
/// handshake or on first read) and the gateway counts the reason.
async fn assert_refused(pki: &Pki, gw: &Gateway, cert: Option<&str>, result: &str) {
    let client = TlsClient::new(pki, gw.addr, cert);
    let before = handshakes(gw, result).await;
    let r = client.get("/x").await;
    assert!(r.is_err(), "expected refusal ({result}), got {r:?}");
    // The server side finishes its accounting just after the alert.
    let what = format!("handshake result {result} to be counted");
    wait_for(&what, Duration::from_secs(2), || async {
        match handshakes(gw, result).await {
            n if n == before + 1.0 => Ok(()),
            n => Err(format!("{n}; log:\n{}", gw.logs())),
        }
    })
    .await;
}

#[tokio::test]
async fn valid_certificate_is_accepted_and_identity_forwarded() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let leaf = pki.client(&pki.root, "reader", workload("reader"));
    let gw = gateway(&pki, "", &up).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let req = http::Request::get("/hello")
        .header("host", "localhost")
        .header("x-forwarded-client-cert", "Hash=evil;Subject=\"CN=admin\"")
        .header("x-ssl-client-s-dn", "CN=admin")
        .header("x-certgate-identity", "admin")
        .body(TestBody::empty())
        .unwrap();
    let reply = client.send(req).await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    let xfcc: Vec<_> = h.get_all("x-forwarded-client-cert").iter().collect();
    assert_eq!(xfcc.len(), 1, "exactly one XFCC header");
    let expected_hash = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &leaf.der,
    ));
    assert_eq!(
        xfcc[0].to_str().unwrap(),
        format!(
            "Hash={expected_hash};Subject=\"CN=reader,O=Example\";URI={}",
            spiffe("reader")
        )
    );
    assert!(h.get("x-ssl-client-s-dn").is_none());
    assert!(h.get("x-certgate-identity").is_none());
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(handshakes(&gw, "ok").await, 1.0);
}

#[tokio::test]
async fn no_certificate_is_refused_in_require_mode() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, "", &up).await;
    assert_refused(&pki, &gw, None, "no_certificate").await;
    assert!(up.seen().is_empty());
    gw.wait_for_log("tls handshake refused").await;
}

#[tokio::test]
async fn untrusted_ca_is_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let other = Ca::root("Some Other CA").unwrap();
    pki.client(&other, "stranger", workload("stranger"));
    let gw = gateway(&pki, "", &up).await;
    assert_refused(&pki, &gw, Some("stranger"), "unknown_ca").await;
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn expired_and_not_yet_valid_are_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(
        &pki.root,
        "expired",
        LeafSpec {
            not_before_secs: -7200,
            not_after_secs: -3600,
            ..workload("expired")
        },
    );
    pki.client(
        &pki.root,
        "future",
        LeafSpec {
            not_before_secs: 3600,
            not_after_secs: 7200,
            ..workload("future")
        },
    );
    let gw = gateway(&pki, "", &up).await;
    assert_refused(&pki, &gw, Some("expired"), "expired").await;
    assert_refused(&pki, &gw, Some("future"), "not_yet_valid").await;
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn wrong_key_usage_is_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    // A server-only certificate (EKU serverAuth) presented as a client certificate.
    pki.client(
        &pki.root,
        "serveronly",
        LeafSpec {
            usage: certgate_testpki::LeafUsage::Server,
            ..workload("s")
        },
    );
    let gw = gateway(&pki, "", &up).await;
    assert_refused(&pki, &gw, Some("serveronly"), "bad_certificate").await;
}

#[tokio::test]
async fn revoked_by_crl_is_refused_others_pass() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let bad = pki.client(&pki.root, "revoked", workload("revoked"));
    pki.client(&pki.root, "good", workload("good"));
    pki.write(
        "ca.crl",
        &pki.root
            .crl(&[bad.serial()], Duration::from_secs(86400))
            .unwrap(),
    );
    let gw = gateway(&pki, "crls = [\"ca.crl\"]", &up).await;
    assert_refused(&pki, &gw, Some("revoked"), "revoked").await;
    assert_served(&pki, &gw, Some("good")).await; // good client
}

#[tokio::test]
async fn stale_crl_denies_by_default_and_warn_allows() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "good", workload("good"));
    pki.write("ca.crl", &pki.root.stale_crl(&[]).unwrap());
    let gw = gateway(&pki, "crls = [\"ca.crl\"]", &up).await;
    assert_refused(&pki, &gw, Some("good"), "bad_certificate").await;
    drop(gw);
    let gw = gateway(&pki, "crls = [\"ca.crl\"]\nstale_crl = \"warn\"", &up).await;
    assert_served(&pki, &gw, Some("good")).await; // warn mode
}

#[tokio::test]
async fn intermediate_chains_and_intermediate_revocation() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let issuing = pki.root.intermediate("Issuing CA").unwrap();
    let leaf = pki.client(&issuing, "leaf-only", workload("svc"));
    // The client sends its leaf followed by the intermediate.
    pki.write(
        "chained.pem",
        &format!("{}{}", leaf.cert_pem, issuing.cert_pem),
    );
    pki.write("chained-key.pem", &leaf.key_pem);
    pki.write("issuing.pem", &issuing.cert_pem);
    let root_crl = |revoked: Vec<certgate_testpki::SerialNumber>| {
        pki.root.crl(&revoked, Duration::from_secs(86400)).unwrap()
    };
    pki.write("root.crl", &root_crl(vec![]));
    pki.write(
        "issuing.crl",
        &issuing.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    // A CRL must come from a CA certgate knows: the intermediate's CRL needs the intermediate
    // configured.
    let crls = "crls = [\"root.crl\", \"issuing.crl\"]\nintermediates = [\"issuing.pem\"]";

    // Without configured intermediates (and so without the intermediate's CRL, its status
    // allowed as unknown), a client that sends its chain is served...
    let gw = gateway(
        &pki,
        "crls = [\"root.crl\"]\nunknown_revocation = \"allow\"",
        &up,
    )
    .await;
    let chained = TlsClient::new(&pki, gw.addr, Some("chained"));
    assert_eq!(chained.get("/x").await.expect("chained client").status, 200);
    // ...and a client that sends only its leaf cannot be chained.
    assert_refused(&pki, &gw, Some("leaf-only"), "unknown_ca").await;
    drop(gw);

    let gw = gateway(&pki, crls, &up).await;
    let r = TlsClient::new(&pki, gw.addr, Some("leaf-only"))
        .get("/x")
        .await;
    assert_eq!(
        r.expect("leaf-only with configured intermediate").status,
        200
    );
    drop(gw);

    // The root revokes the intermediate: everything it issued is refused.
    pki.write("root.crl", &root_crl(vec![issuing.serial()]));
    let gw = gateway(&pki, crls, &up).await;
    assert_refused(&pki, &gw, Some("chained"), "revoked").await;
    drop(gw);

    // No CRL for the intermediate: unknown revocation status is refused by default...
    pki.write("root.crl", &root_crl(vec![]));
    let gw = gateway(&pki, "crls = [\"root.crl\"]", &up).await;
    assert_refused(&pki, &gw, Some("chained"), "bad_certificate").await;
    drop(gw);
    // ...and allowed when the operator says so.
    let gw = gateway(
        &pki,
        "crls = [\"root.crl\"]\nunknown_revocation = \"allow\"",
        &up,
    )
    .await;
    assert_served(&pki, &gw, Some("chained")).await;
}

#[tokio::test]
async fn end_entity_scope_checks_only_the_leaf() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let issuing = pki.root.intermediate("Issuing CA").unwrap();
    pki.client(&issuing, "leaf", workload("svc"));
    let revoked = pki.client(&issuing, "revoked-leaf", workload("gone"));
    pki.write("issuing.pem", &issuing.cert_pem);
    // The root revoked the intermediate; the intermediate revoked one leaf.
    pki.write(
        "root.crl",
        &pki.root
            .crl(&[issuing.serial()], Duration::from_secs(86400))
            .unwrap(),
    );
    pki.write(
        "issuing.crl",
        &issuing
            .crl(&[revoked.serial()], Duration::from_secs(86400))
            .unwrap(),
    );
    let crls = "crls = [\"root.crl\", \"issuing.crl\"]\nintermediates = [\"issuing.pem\"]";
    let gw = gateway(&pki, crls, &up).await;
    assert_refused(&pki, &gw, Some("leaf"), "revoked").await;
    drop(gw);
    // end_entity: the intermediate's status is not looked at; the leaf's still is.
    let gw = gateway(
        &pki,
        &format!("{crls}\nrevocation_scope = \"end_entity\""),
        &up,
    )
    .await;
    assert_served(&pki, &gw, Some("leaf")).await;
    assert_refused(&pki, &gw, Some("revoked-leaf"), "revoked").await;
}

#[tokio::test]
async fn a_partitioned_crl_speaks_only_for_its_distribution_point() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let spec = |sa: &str, dp: &str| LeafSpec {
        crl_distribution_points: vec![format!("http://crl.test/{dp}.crl")],
        ..workload(sa)
    };
    let in_a = pki.client(&pki.root, "in-a", spec("a", "a"));
    let in_b = pki.client(&pki.root, "in-b", spec("b", "b"));
    let no_dp = pki.client(&pki.root, "no-dp", workload("c"));
    pki.client(&pki.root, "good-a", spec("d", "a"));
    // Partition "a" lists all three serials; it does not speak for partition "b".
    pki.write(
        "a.crl",
        &pki.root
            .partitioned_crl(
                &[in_a.serial(), in_b.serial(), no_dp.serial()],
                "http://crl.test/a.crl",
                true,
            )
            .unwrap(),
    );
    let gw = gateway(&pki, "crls = [\"a.crl\"]", &up).await;
    assert_refused(&pki, &gw, Some("in-a"), "revoked").await;
    // A certificate without distribution points is covered by any CRL of its issuer.
    assert_refused(&pki, &gw, Some("no-dp"), "revoked").await;
    assert_served(&pki, &gw, Some("good-a")).await;
    // Partition b's status is unknown (refused by default), not "listed in a".
    assert_refused(&pki, &gw, Some("in-b"), "bad_certificate").await;
    drop(gw);
    let gw = gateway(
        &pki,
        "crls = [\"a.crl\"]\nunknown_revocation = \"allow\"",
        &up,
    )
    .await;
    assert_served(&pki, &gw, Some("in-b")).await;
    assert_refused(&pki, &gw, Some("in-a"), "revoked").await;
}

#[tokio::test]
async fn tls12_and_h2_are_served() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = gateway(&pki, "", &up).await;
    let tls12 = TlsClient::with_versions(&pki, gw.addr, Some("reader"), &[&rustls::version::TLS12]);
    assert_eq!(tls12.get("/x").await.expect("tls1.2").status, 200);
    let tls12_anon = TlsClient::with_versions(&pki, gw.addr, None, &[&rustls::version::TLS12]);
    assert!(tls12_anon.get("/x").await.is_err());

    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let mut h2 = client.h2().await.expect("h2 negotiated");
    for i in 0..3 {
        let req = http::Request::get(format!("https://localhost/h2/{i}"))
            .body(TestBody::empty())
            .unwrap();
        let reply = read_reply(h2.send_request(req).await.expect("h2 request"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.version, http::Version::HTTP_2);
        assert_eq!(reply.text(), format!("upstream saw /h2/{i}"));
    }
    // The :authority became the Host header for the HTTP/1.1 upstream.
    assert_eq!(
        up.seen().last().unwrap().headers.get("host").unwrap(),
        "localhost"
    );
}

#[tokio::test]
async fn garbage_instead_of_tls_does_not_hurt_other_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let gw = gateway(&pki, "", &up).await;
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0],
        &[0u8; 4096],
    ] {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let _ = s.write_all(junk).await;
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
    assert_served(&pki, &gw, Some("reader")).await; // still serving
    assert_eq!(handshakes(&gw, "other").await, 3.0);
}

#[tokio::test]
async fn crl_in_der_form_is_honoured() {
    use rustls::pki_types::CertificateRevocationListDer;
    use rustls::pki_types::pem::PemObject;
    let pki = Pki::new();
    let up = Upstream::start().await;
    let bad = pki.client(&pki.root, "revoked", workload("revoked"));
    pki.client(&pki.root, "good", workload("good"));
    let pem = pki
        .root
        .crl(&[bad.serial()], Duration::from_secs(86400))
        .unwrap();
    let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
    std::fs::write(pki.path("ca.crl.der"), der.as_ref()).unwrap();
    let gw = gateway(&pki, "crls = [\"ca.crl.der\"]", &up).await;
    assert_refused(&pki, &gw, Some("revoked"), "revoked").await;
    assert_served(&pki, &gw, Some("good")).await;
}

/// Server keys in the traditional PKCS#1 (RSA) and SEC1 (EC) encodings, converted by openssl.
#[tokio::test]
async fn server_keys_in_pkcs1_and_sec1() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(pki.dir.path())
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // SEC1: the rcgen EC key rewritten in the traditional form.
    openssl(&[
        "pkey",
        "-in",
        "server-key.pem",
        "-traditional",
        "-out",
        "server-key.sec1.pem",
    ]);
    let sec1 = std::fs::read_to_string(pki.path("server-key.sec1.pem")).unwrap();
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    std::fs::rename(pki.path("server-key.sec1.pem"), pki.path("server-key.pem")).unwrap();
    let gw = gateway(&pki, "", &up).await;
    assert_served(&pki, &gw, Some("reader")).await;
    drop(gw);

    // PKCS#1: an RSA server key and certificate signed by the test root.
    std::fs::write(pki.path("root-key.pem"), pki.root.key_pem()).unwrap();
    openssl(&["genrsa", "-traditional", "-out", "server-key.pem", "2048"]);
    let pkcs1 = std::fs::read_to_string(pki.path("server-key.pem")).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1}");
    openssl(&[
        "req",
        "-new",
        "-key",
        "server-key.pem",
        "-subj",
        "/CN=localhost",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        pki.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "root-key.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    let gw = gateway(&pki, "", &up).await;
    assert_served(&pki, &gw, Some("reader")).await;
}
