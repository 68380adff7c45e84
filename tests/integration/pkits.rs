//! NIST PKITS against certgate: 4.1, 4.2 and 4.4 through live handshakes, the client presenting
//! its intermediates (with `intermediates` empty, and again with them configured); and 4.4
//! (basic certificate revocation) through `certgate explain` with the trust anchor, every CA of
//! the section as intermediates, every CRL in its own file (explain verifies exactly as a
//! handshake).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::common::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pkits");

const CAS: &[&str] = &[
    "NoCRLCACert",
    "GoodCACert",
    "RevokedsubCACert",
    "BadCRLSignatureCACert",
    "BadCRLIssuerNameCACert",
    "WrongCRLCACert",
    "TwoCRLsCACert",
    "UnknownCRLEntryExtensionCACert",
    "UnknownCRLExtensionCACert",
    "OldCRLnextUpdateCACert",
    "pre2000CRLnextUpdateCACert",
    "GeneralizedTimeCRLnextUpdateCACert",
    "NegativeSerialNumberCACert",
    "LongSerialNumberCACert",
];

const CRLS: &[&str] = &[
    "TrustAnchorRootCRL",
    "GoodCACRL",
    "RevokedsubCACRL",
    "BadCRLSignatureCACRL",
    "BadCRLIssuerNameCACRL",
    "WrongCRLCACRL",
    "TwoCRLsCAGoodCRL",
    "TwoCRLsCABadCRL",
    "UnknownCRLEntryExtensionCACRL",
    "UnknownCRLExtensionCACRL",
    "OldCRLnextUpdateCACRL",
    "pre2000CRLnextUpdateCACRL",
    "GeneralizedTimeCRLnextUpdateCACRL",
    "NegativeSerialNumberCACRL",
    "LongSerialNumberCACRL",
];

/// (PKITS test, end-entity certificate, expected verdict: `None` accepted, else the refusal).
const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "4.4.1 missing CRL",
        "InvalidMissingCRLTest1EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.2 revoked CA",
        "InvalidRevokedCATest2EE",
        Some("revoked"),
    ),
    (
        "4.4.3 revoked EE",
        "InvalidRevokedEETest3EE",
        Some("revoked"),
    ),
    (
        "4.4.4 bad CRL signature",
        "InvalidBadCRLSignatureTest4EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.5 bad CRL issuer name",
        "InvalidBadCRLIssuerNameTest5EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.6 wrong CRL",
        "InvalidWrongCRLTest6EE",
        Some("bad_certificate"),
    ),
    ("4.4.7 two CRLs", "ValidTwoCRLsTest7EE", None),
    (
        "4.4.8 unknown CRL entry extension",
        "InvalidUnknownCRLEntryExtensionTest8EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.9 unknown CRL extension",
        "InvalidUnknownCRLExtensionTest9EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.10 unknown CRL extension",
        "InvalidUnknownCRLExtensionTest10EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.11 old CRL nextUpdate",
        "InvalidOldCRLnextUpdateTest11EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.12 pre-2000 CRL nextUpdate",
        "Invalidpre2000CRLnextUpdateTest12EE",
        Some("bad_certificate"),
    ),
    (
        "4.4.13 GeneralizedTime nextUpdate",
        "ValidGeneralizedTimeCRLnextUpdateTest13EE",
        None,
    ),
    (
        "4.4.14 negative serial",
        "ValidNegativeSerialNumberTest14EE",
        None,
    ),
    (
        "4.4.15 negative serial revoked",
        "InvalidNegativeSerialNumberTest15EE",
        Some("revoked"),
    ),
    ("4.4.16 long serial", "ValidLongSerialNumberTest16EE", None),
    ("4.4.17 long serial", "ValidLongSerialNumberTest17EE", None),
    (
        "4.4.18 long serial revoked",
        "InvalidLongSerialNumberTest18EE",
        Some("revoked"),
    ),
];

fn pem(der_file: &Path) -> String {
    let der = std::fs::read(der_file).unwrap_or_else(|e| panic!("{}: {e}", der_file.display()));
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn pkits_4_4_basic_certificate_revocation() {
    let pki = Pki::new();
    let data = Path::new(DATA);
    pki.write("ta.pem", &pem(&data.join("TrustAnchorRootCertificate.crt")));
    let cas: String = CAS
        .iter()
        .map(|c| pem(&data.join(format!("{c}.crt"))))
        .collect();
    pki.write("cas.pem", &cas);
    let crls: Vec<String> = CRLS
        .iter()
        .map(|c| format!("\"{}\"", data.join(format!("{c}.crl")).display()))
        .collect();
    pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\
             [admin]\nbind = \"127.0.0.1:0\"\n\
             [client_auth]\nmode = \"require\"\ntrust_store = [\"ta.pem\"]\nintermediates = [\"cas.pem\"]\ncrls = [{}]\n\
             [upstreams.up]\nurl = \"http://127.0.0.1:9\"\n\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
            crls.join(", ")
        ),
    );
    let config = pki.path("certgate.toml");
    let mut failures = Vec::new();
    for (test, ee, expected) in CASES {
        let cert = pki.write(&format!("{ee}.pem"), &pem(&data.join(format!("{ee}.crt"))));
        let (_, out, err) = run_cli(&[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--path",
            "/x",
        ]);
        let verdict = match expected {
            None => out.contains("tls       certificate verifies"),
            Some(label) => out.contains(&format!("tls       handshake would be refused: {label}")),
        };
        if !verdict {
            failures.push(format!("{test} ({ee}): expected {expected:?}\n{out}{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The unusable CRLs are named by check.
    let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    for bad in [
        "BadCRLSignatureCACRL",
        "BadCRLIssuerNameCACRL",
        "TwoCRLsCABadCRL",
        "UnknownCRLEntryExtensionCACRL",
        "UnknownCRLExtensionCACRL",
    ] {
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

/// PKITS 4.1 (signatures), 4.2 (validity) and 4.4 (CRLs) through live handshakes: (test, end
/// entity, its CAs from the trust anchor down, valid?). The client presents its CAs as real
/// clients do; the CRLs of every case are configured, none of the CAs.
const LIVE: &[(&str, &str, &[&str], bool)] = &[
    (
        "4.1.1",
        "ValidCertificatePathTest1EE",
        &["GoodCACert"],
        true,
    ),
    (
        "4.1.2",
        "InvalidCASignatureTest2EE",
        &["BadSignedCACert"],
        false,
    ),
    ("4.1.3", "InvalidEESignatureTest3EE", &["GoodCACert"], false),
    (
        "4.2.1",
        "InvalidCAnotBeforeDateTest1EE",
        &["BadnotBeforeDateCACert"],
        false,
    ),
    (
        "4.2.2",
        "InvalidEEnotBeforeDateTest2EE",
        &["GoodCACert"],
        false,
    ),
    // Valid in PKITS, refused here: its notBefore (1950) is before the Unix epoch, which
    // rustls-webpki cannot represent (README "Revocation", PKITS). The one known limit.
    (
        "4.2.3",
        "Validpre2000UTCnotBeforeDateTest3EE",
        &["GoodCACert"],
        false,
    ),
    (
        "4.2.4",
        "ValidGeneralizedTimenotBeforeDateTest4EE",
        &["GoodCACert"],
        true,
    ),
    (
        "4.2.5",
        "InvalidCAnotAfterDateTest5EE",
        &["BadnotAfterDateCACert"],
        false,
    ),
    (
        "4.2.6",
        "InvalidEEnotAfterDateTest6EE",
        &["GoodCACert"],
        false,
    ),
    ("4.4.1", "InvalidMissingCRLTest1EE", &["NoCRLCACert"], false),
    (
        "4.4.2",
        "InvalidRevokedCATest2EE",
        &["GoodCACert", "RevokedsubCACert"],
        false,
    ),
    ("4.4.3", "InvalidRevokedEETest3EE", &["GoodCACert"], false),
    (
        "4.4.4",
        "InvalidBadCRLSignatureTest4EE",
        &["BadCRLSignatureCACert"],
        false,
    ),
    (
        "4.4.5",
        "InvalidBadCRLIssuerNameTest5EE",
        &["BadCRLIssuerNameCACert"],
        false,
    ),
    (
        "4.4.6",
        "InvalidWrongCRLTest6EE",
        &["WrongCRLCACert"],
        false,
    ),
    ("4.4.7", "ValidTwoCRLsTest7EE", &["TwoCRLsCACert"], true),
    (
        "4.4.8",
        "InvalidUnknownCRLEntryExtensionTest8EE",
        &["UnknownCRLEntryExtensionCACert"],
        false,
    ),
    (
        "4.4.9",
        "InvalidUnknownCRLExtensionTest9EE",
        &["UnknownCRLExtensionCACert"],
        false,
    ),
    (
        "4.4.10",
        "InvalidUnknownCRLExtensionTest10EE",
        &["UnknownCRLExtensionCACert"],
        false,
    ),
    (
        "4.4.11",
        "InvalidOldCRLnextUpdateTest11EE",
        &["OldCRLnextUpdateCACert"],
        false,
    ),
    (
        "4.4.12",
        "Invalidpre2000CRLnextUpdateTest12EE",
        &["pre2000CRLnextUpdateCACert"],
        false,
    ),
    (
        "4.4.13",
        "ValidGeneralizedTimeCRLnextUpdateTest13EE",
        &["GeneralizedTimeCRLnextUpdateCACert"],
        true,
    ),
    (
        "4.4.14",
        "ValidNegativeSerialNumberTest14EE",
        &["NegativeSerialNumberCACert"],
        true,
    ),
    (
        "4.4.15",
        "InvalidNegativeSerialNumberTest15EE",
        &["NegativeSerialNumberCACert"],
        false,
    ),
    (
        "4.4.16",
        "ValidLongSerialNumberTest16EE",
        &["LongSerialNumberCACert"],
        true,
    ),
    (
        "4.4.17",
        "ValidLongSerialNumberTest17EE",
        &["LongSerialNumberCACert"],
        true,
    ),
    (
        "4.4.18",
        "InvalidLongSerialNumberTest18EE",
        &["LongSerialNumberCACert"],
        false,
    ),
    (
        "4.4.20",
        "InvalidSeparateCertificateandCRLKeysTest20EE",
        &["SeparateCertificateandCRLKeysCertificateSigningCACert"],
        false,
    ),
    (
        "4.4.21",
        "InvalidSeparateCertificateandCRLKeysTest21EE",
        &["SeparateCertificateandCRLKeysCA2CertificateSigningCACert"],
        false,
    ),
];

/// Every CRL file of the data set.
fn all_crls(data: &Path) -> Vec<String> {
    let mut crls: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "crl").then(|| format!("\"{}\"", p.display()))
        })
        .collect();
    crls.sort();
    crls
}

/// Runs every live case against a gateway whose `client_auth` has `intermediates`; returns the
/// cases whose outcome differs from the expected one.
async fn live_pkits(pki: &Pki, intermediates: &str) -> Vec<String> {
    let data = Path::new(DATA);
    pki.write("ta.pem", &pem(&data.join("TrustAnchorRootCertificate.crt")));
    let up = Upstream::start().await;
    let body = format!(
        "[reload]\nwatch = false\n[client_auth]\nmode = \"require\"\ntrust_store = [\"ta.pem\"]\nintermediates = [{intermediates}]\ncrls = [{}]\n{}\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        all_crls(data).join(", "),
        upstream_section("up", &up.url(), ""),
    );
    let gw = Gateway::start(pki, &body).await;
    let mut wrong = Vec::new();
    for (test, ee, cas, valid) in LIVE {
        let mut chain = pem(&data.join(format!("{ee}.crt")));
        for ca in cas.iter().rev() {
            chain.push_str(&pem(&data.join(format!("{ca}.crt"))));
        }
        pki.write(&format!("{ee}.pem"), &chain);
        let key = std::fs::read_to_string(data.join(format!("keys/{ee}.key"))).unwrap();
        pki.write(&format!("{ee}-key.pem"), &key);
        let accepted = matches!(
            TlsClient::new(pki, gw.addr, Some(ee)).get("/x").await,
            Ok(r) if r.status == 200
        );
        if accepted != *valid {
            wrong.push(format!(
                "{test} {ee}: {} (expected {})",
                if accepted { "accepted" } else { "refused" },
                if *valid { "accepted" } else { "refused" }
            ));
        }
    }
    wrong
}

#[tokio::test]
async fn pkits_live_with_the_intermediates_the_clients_present() {
    let pki = Pki::new();
    let wrong = live_pkits(&pki, "").await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn pkits_live_with_the_intermediates_configured_too() {
    let pki = Pki::new();
    let data = Path::new(DATA);
    let cas: String = LIVE
        .iter()
        .flat_map(|(_, _, cas, _)| cas.iter())
        .map(|c| pem(&data.join(format!("{c}.crt"))))
        .collect();
    pki.write("cas.pem", &cas);
    let wrong = live_pkits(&pki, "\"cas.pem\"").await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
