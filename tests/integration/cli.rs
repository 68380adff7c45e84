//! `certgate check` and `certgate explain`.

use certgate_testpki::{Ca, LeafSpec};

use crate::common::*;

const GOOD: &str = r#"
[listener]
bind = "127.0.0.1:8443"
cert = "server.pem"
key = "server-key.pem"

[client_auth]
mode = "require"
trust_store = ["ca.pem"]
crls = ["ca.crl"]

[upstreams.payments]
url = "http://127.0.0.1:9000"

[[routes]]
name = "payments-read"
path_prefix = "/payments"
methods = ["GET", "HEAD"]
upstream = "payments"
allow = [
  { uri = "spiffe://example.org/ns/test/sa/reader" },
  { cn = "reporting-batch", ou = "finance" },
]
deny = [{ cn = "banned" }]

[[routes]]
name = "payments-v1"
path_prefix = "/payments/v1"
upstream = "payments"
allow = [{ any = true }]
"#;

fn pki_with_crl() -> Pki {
    let pki = Pki::new();
    pki.write(
        "ca.crl",
        &pki.root
            .crl(&[], std::time::Duration::from_secs(86400))
            .unwrap(),
    );
    pki
}

fn check(pki: &Pki, config: &str) -> (i32, String, String) {
    let path = pki.write("check.toml", config);
    run_cli(&["check", "--config", path.to_str().unwrap()])
}

#[test]
fn check_accepts_a_good_config_and_summarises_it() {
    let pki = pki_with_crl();
    let (code, out, err) = check(&pki, GOOD);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("config OK"), "{out}");
    assert!(out.contains("payments-read"), "{out}");
    assert!(out.contains("CN=Test Root CA"), "{out}");
    assert!(out.contains("next update"), "{out}");
    assert!(
        !out.contains("routes[1] (\"payments-v1\") is never reached"),
        "payments-v1 allows more methods than payments-read, so it is reachable: {out}"
    );
}

#[test]
fn check_warns_about_shadowed_routes_and_public_admin() {
    let pki = pki_with_crl();
    let config = GOOD.replace("methods = [\"GET\", \"HEAD\"]\n", "")
        + "\n[admin]\nbind = \"0.0.0.0:9901\"\n";
    let (code, out, _) = check(&pki, &config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: routes[1] (\"payments-v1\") is never reached"),
        "{out}"
    );
    assert!(
        out.contains("warning: admin.bind = 0.0.0.0:9901 is not a loopback address"),
        "{out}"
    );
}

#[test]
fn check_warns_when_revocation_is_not_checked() {
    let pki = pki_with_crl();
    let (code, out, _) = check(&pki, &GOOD.replace("crls = [\"ca.crl\"]\n", ""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: client_auth.crls is empty"), "{out}");
    let (_, out, _) = check(&pki, GOOD);
    assert!(!out.contains("crls is empty"), "{out}");
}

#[test]
fn check_reports_file_key_and_problem() {
    let pki = pki_with_crl();
    let other = Ca::root("Other").unwrap();
    let other_server = other.issue(&LeafSpec::localhost_server()).unwrap();
    pki.write("other-key.pem", &other_server.key_pem);
    pki.write("empty.pem", "");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            GOOD.replace("mode = \"require\"", "mode = require"),
            vec!["check.toml", "line 8", "column 8", "mode = require"],
        ),
        (
            GOOD.replace("server.pem", "missing.pem"),
            vec!["check.toml", "listener.cert", "missing.pem", "No such file"],
        ),
        (
            GOOD.replace("server-key.pem", "other-key.pem"),
            vec![
                "listener.key",
                "does not fit listener.cert: the private key is not the certificate's",
            ],
        ),
        (
            GOOD.replace(
                "upstream = \"payments\"\nallow = [{ any",
                "upstream = \"nope\"\nallow = [{ any",
            ),
            vec!["routes[1].upstream", "no [upstreams.nope]"],
        ),
        (
            GOOD.replace("{ cn = \"banned\" }", "{ dns = \"a.*.example\" }"),
            vec!["routes[0].deny[0]", "dns"],
        ),
        (
            GOOD.replace("{ cn = \"banned\" }", "{ sha256 = \"xyz\" }"),
            vec!["routes[0].deny[0]", "sha256"],
        ),
        (
            GOOD.replace("{ any = true }", "{ }"),
            vec!["routes[1].allow[0]", "empty entry"],
        ),
        (
            GOOD.replace("name = \"payments-v1\"", "name = \"payments-read\""),
            vec!["routes[1].name", "duplicate route name"],
        ),
        (
            GOOD.replace(
                "path_prefix = \"/payments/v1\"",
                "path_prefix = \"payments\"",
            ),
            vec!["routes[1].path_prefix", "must start with '/'"],
        ),
        (
            GOOD.replace(
                "[[routes]]\nname = \"payments-v1\"",
                "[[routes]]\ncolour = \"red\"\nname = \"payments-v1\"",
            ),
            vec!["unknown field `colour`"],
        ),
        (
            GOOD.replace("ca.pem", "empty.pem"),
            vec!["client_auth.trust_store[0]", "no CERTIFICATE"],
        ),
        (
            GOOD.replace("ca.crl", "ca.pem"),
            vec!["client_auth.crls[0]"],
        ),
        (
            GOOD.replace("http://127.0.0.1:9000", "ftp://x"),
            vec!["upstreams.payments.url", "not supported"],
        ),
        (
            GOOD.replace("methods = [\"GET\", \"HEAD\"]", "methods = [\"get\"]"),
            vec!["routes[0].methods", "case-sensitive"],
        ),
        (
            GOOD.replace("bind = \"127.0.0.1:8443\"", "bind = \"nowhere\""),
            vec!["check.toml", "bind"],
        ),
    ];
    for (config, wants) in cases {
        let (code, out, err) = check(&pki, &config);
        assert_ne!(code, 0, "should fail for {wants:?}:\n{out}");
        for w in &wants {
            assert!(err.contains(w), "expected {w:?} in:\n{err}");
        }
    }
    let (code, _, err) = run_cli(&["check", "--config", "/nonexistent/certgate.toml"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("/nonexistent/certgate.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn explain_names_route_and_rule() {
    let pki = pki_with_crl();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(
        &pki.root,
        "batch",
        LeafSpec {
            ou: Some("finance".into()),
            ..LeafSpec::client("reporting-batch")
        },
    );
    pki.client(
        &pki.root,
        "banned",
        LeafSpec {
            uris: vec![spiffe("reader")],
            ..LeafSpec::client("banned")
        },
    );
    let stranger_ca = Ca::root("Stranger CA").unwrap();
    pki.client(&stranger_ca, "stranger", workload("reader"));
    let config = pki.write("certgate.toml", GOOD);
    let explain = |cert: &str, method: &str, path: &str| {
        let cert = pki.path(&format!("{cert}.pem"));
        run_cli(&[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--method",
            method,
            "--path",
            path,
        ])
    };

    let (code, out, _) = explain("reader", "GET", "/payments/1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("routes[0] \"payments-read\""), "{out}");
    assert!(
        out.contains("allowed by allow[0] { uri = \"spiffe://example.org/ns/test/sa/reader\" }"),
        "{out}"
    );

    let (code, out, _) = explain("batch", "HEAD", "/payments");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("allowed by allow[1] { cn = \"reporting-batch\", ou = \"finance\" }"),
        "{out}"
    );

    let (code, out, _) = explain("banned", "GET", "/payments/1");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("denied -> 403 by deny[0] { cn = \"banned\" }"),
        "{out}"
    );

    let (code, out, _) = explain("reader", "POST", "/payments/v1/x/../y");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("POST /payments/v1/y"),
        "normalised path is shown: {out}"
    );
    assert!(out.contains("routes[1] \"payments-v1\""), "{out}");

    let (code, out, _) = explain("reader", "GET", "/elsewhere");
    assert_eq!(code, 3);
    assert!(out.contains("none matches -> 404"), "{out}");
    assert!(
        out.contains(
            "no route's path_prefix covers /elsewhere (prefixes: /payments, /payments/v1)"
        ),
        "{out}"
    );
    let (code, out, _) = explain("reader", "POST", "/payments/1");
    assert_eq!(code, 3);
    assert!(
        out.contains(
            "nearest: routes[0] \"payments-read\" covers the path but allows only GET, HEAD"
        ),
        "says why: {out}"
    );
    let (code, out, _) = explain("reader", "TRACE", "/payments/1");
    assert_eq!(code, 3);
    assert!(out.contains("405"), "{out}");

    // In require mode a request without a certificate never reaches a route: no 401 claim.
    let (code, out, _) = run_cli(&[
        "explain",
        "--config",
        config.to_str().unwrap(),
        "--path",
        "/payments/1",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no client certificate") && out.contains("handshake is refused"),
        "{out}"
    );
    assert!(!out.contains("401"), "{out}");

    let (code, out, _) = explain("stranger", "GET", "/payments/1");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("handshake would be refused: unknown_ca"),
        "{out}"
    );
}

#[test]
fn check_refuses_a_log_level_that_would_be_replaced_or_read_as_a_target() {
    let pki = pki_with_crl();
    for bad in ["verbose", "info,loud", "certgate=chatty", "=debug", ""] {
        let (code, out, err) = check(&pki, &format!("{GOOD}\n[log]\nlevel = \"{bad}\"\n"));
        assert_eq!(code, 1, "{bad:?}: {out}{err}");
        assert!(err.contains("log.level"), "{bad:?}: {err}");
        assert!(!out.contains("config OK"), "{bad:?}: {out}");
    }
    for good in ["debug", "WARN", "certgate=debug,info", "off"] {
        let (code, out, err) = check(&pki, &format!("{GOOD}\n[log]\nlevel = \"{good}\"\n"));
        assert_eq!(code, 0, "{good:?}: {out}{err}");
    }
}
