//! NIST PKITS 4.4 (basic certificate revocation) against certgate's CRL handling: the trust
//! anchor, every CA of the section as intermediates, every CRL in its own file, and each test's
//! end-entity certificate put to `certgate explain` (which verifies exactly as a handshake).

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
