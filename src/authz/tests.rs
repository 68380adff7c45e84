use super::*;
use crate::authn::identity::ClientIdentity;
use crate::config::RawMatcher;
use crate::config::RawRoute;

fn identity() -> ClientIdentity {
    ClientIdentity {
        subject: "CN=reporting-batch,OU=finance,O=Example".into(),
        common_names: vec!["reporting-batch".into()],
        organizations: vec!["Example".into()],
        organizational_units: vec!["finance".into()],
        issuer: "CN=Issuing CA".into(),
        issuer_common_names: vec!["Issuing CA".into()],
        uris: vec!["spiffe://example.org/ns/billing/sa/reader".into()],
        dns_names: vec!["reader.billing.example.org".into()],
        emails: vec!["Ops@Example.org".into()],
        serial: "01".into(),
        not_before: 0,
        not_after: i64::MAX,
        sha256: [0xab; 32],
        sha256_hex: "ab".repeat(32),
        der: rustls::pki_types::CertificateDer::from(Vec::new()),
    }
}

fn route_toml(toml_body: &str) -> Result<Route, RouteError> {
    let raw: RawRoute = toml::from_str(&format!(
        "name = \"r\"\nupstream = \"up\"\npath_prefix = \"/p\"\n{toml_body}"
    ))
    .expect("test route parses");
    Route::compile(0, &raw, |n| (n == "up").then_some(0), |_| None)
}

fn matcher(entry: &str) -> Result<Rule, String> {
    #[derive(serde::Deserialize)]
    struct W {
        m: RawMatcher,
    }
    let w: W = toml::from_str(&format!("m = {entry}")).expect("test matcher parses");
    Rule::compile(&w.m)
}

#[test]
fn each_matcher_key_matches_and_mismatches() {
    let id = identity();
    let yes = [
        r#"{ uri = "spiffe://example.org/ns/billing/sa/reader" }"#,
        r#"{ uri = "spiffe://example.org/ns/billing/*" }"#,
        r#"{ dns = "reader.billing.example.org" }"#,
        r#"{ dns = "READER.billing.example.org" }"#,
        r#"{ dns = "*.billing.example.org" }"#,
        r#"{ email = "Ops@example.ORG" }"#,
        r#"{ cn = "reporting-batch", ou = "finance" }"#,
        r#"{ o = "Example" }"#,
        r#"{ issuer_cn = "Issuing CA" }"#,
        r#"{ any = true }"#,
    ];
    for e in yes {
        assert!(matcher(e).unwrap().matches(&id), "{e} should match");
    }
    let sha = format!("{{ sha256 = \"{}\" }}", "AB:".repeat(31) + "AB");
    assert!(matcher(&sha).unwrap().matches(&id));
    let no = [
        r#"{ uri = "spiffe://example.org/ns/billing" }"#,
        r#"{ uri = "spiffe://example.org/ns/bill/*" }"#,
        r#"{ uri = "SPIFFE://example.org/ns/billing/sa/reader" }"#,
        r#"{ dns = "*.example.org" }"#,
        r#"{ email = "ops@example.org" }"#,
        r#"{ cn = "reporting-batch", ou = "sales" }"#,
        r#"{ cn = "Reporting-batch" }"#,
        r#"{ issuer_cn = "Other CA" }"#,
    ];
    for e in no {
        assert!(!matcher(e).unwrap().matches(&id), "{e} should not match");
    }
    let other_sha = format!("{{ sha256 = \"{}\" }}", "cd".repeat(32));
    assert!(!matcher(&other_sha).unwrap().matches(&id));
}

#[test]
fn invalid_matchers_are_refused() {
    for (e, want) in [
        ("{}", "empty entry"),
        ("{ any = false }", "any"),
        (r#"{ uri = "spiffe://x/*/y" }"#, "uri"),
        (r#"{ uri = "spiffe://x*" }"#, "uri"),
        (r#"{ dns = "a.*.example.org" }"#, "dns"),
        (r#"{ dns = "*example.org" }"#, "dns"),
        (r#"{ sha256 = "zz" }"#, "sha256"),
        (r#"{ sha256 = "abcd" }"#, "sha256"),
        (r#"{ cn = "" }"#, "cn"),
    ] {
        let err = matcher(e).unwrap_err();
        assert!(err.contains(want), "{e}: {err}");
    }
}

#[test]
fn deny_beats_allow_and_no_allow_denies() {
    let id = identity();
    let r =
        route_toml("allow = [{ any = true }]\ndeny = [{ cn = \"nobody\" }, { ou = \"finance\" }]")
            .unwrap();
    assert_eq!(r.authorize(Some(&id)), (Verdict::Deny, DecidedBy::Deny(1)));
    let r = route_toml("").unwrap();
    assert_eq!(
        r.authorize(Some(&id)),
        (Verdict::Deny, DecidedBy::NoAllowMatched)
    );
    let r = route_toml("allow = [{ cn = \"x\" }, { o = \"Example\" }]").unwrap();
    assert_eq!(
        r.authorize(Some(&id)),
        (Verdict::Allow, DecidedBy::Allow(1))
    );
}

#[test]
fn unauthenticated_clients() {
    let r = route_toml("allow = [{ any = true }]").unwrap();
    assert_eq!(
        r.authorize(None),
        (Verdict::Unauthenticated, DecidedBy::NoCertificate)
    );
    let r = route_toml("allow_unauthenticated = true\ndeny = [{ o = \"Example\" }]").unwrap();
    assert_eq!(
        r.authorize(None),
        (Verdict::Allow, DecidedBy::AllowUnauthenticated)
    );
    assert_eq!(
        r.authorize(Some(&identity())),
        (Verdict::Deny, DecidedBy::Deny(0))
    );
}

#[test]
fn route_validation_names_the_key() {
    for (body, key) in [
        ("methods = []", "methods"),
        ("methods = [\"get\"]", "methods"),
        ("allow = [{}]", "allow[0]"),
        ("deny = [{ any = true }, { dns = \"x*\" }]", "deny[1]"),
        ("host = \"a/b\"", "host"),
    ] {
        let e = route_toml(body).unwrap_err();
        assert_eq!(e.key, key, "{body}: {}", e.problem);
    }
    let raw: RawRoute =
        toml::from_str("name = \"r\"\nupstream = \"nope\"\npath_prefix = \"/p\"").unwrap();
    let e = Route::compile(0, &raw, |_| None, |_| None).unwrap_err();
    assert_eq!(e.key, "upstream");
    for prefix in ["p", "/a/../b", "/a/", "/a%2fb"] {
        let raw: RawRoute = toml::from_str(&format!(
            "name = \"r\"\nupstream = \"up\"\npath_prefix = \"{prefix}\""
        ))
        .unwrap();
        let e = Route::compile(0, &raw, |_| Some(0), |_| None).unwrap_err();
        assert_eq!(e.key, "path_prefix", "{prefix}");
    }
}

fn table(routes: &[&str]) -> RouteTable {
    RouteTable::new(
        routes
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let raw: RawRoute =
                    toml::from_str(&format!("name = \"r{i}\"\nupstream = \"up\"\n{body}")).unwrap();
                Route::compile(i, &raw, |_| Some(0), |_| None).unwrap()
            })
            .collect(),
    )
}

#[test]
fn first_match_in_file_order_on_host_path_method() {
    let t = table(&[
        "path_prefix = \"/payments\"\nmethods = [\"GET\", \"HEAD\"]\nhost = \"api.example.com\"",
        "path_prefix = \"/payments\"",
        "path_prefix = \"/\"",
    ]);
    let get = Method::GET;
    let post = Method::POST;
    let find = |m: &Method, h: Option<&str>, p: &str| {
        t.find(&RequestParts {
            method: m,
            host: h,
            path: p,
        })
        .map(|r| r.name.as_str())
    };
    assert_eq!(
        find(&get, Some("api.example.com"), "/payments/1"),
        Some("r0")
    );
    assert_eq!(
        find(&post, Some("api.example.com"), "/payments/1"),
        Some("r1")
    );
    assert_eq!(find(&get, Some("other"), "/payments"), Some("r1"));
    assert_eq!(find(&get, None, "/paymentsX"), Some("r2"));
    let t2 = table(&["path_prefix = \"/payments\""]);
    let d = t2.decide(
        &RequestParts {
            method: &get,
            host: None,
            path: "/paymentsX",
        },
        None,
    );
    assert_eq!(d.verdict, Verdict::NoRoute);
    assert!(d.route.is_none());
}

#[test]
fn shadowing_is_detected() {
    let t = table(&[
        "path_prefix = \"/api\"",
        "path_prefix = \"/api/v1\"\nmethods = [\"GET\"]",
        "path_prefix = \"/apix\"",
    ]);
    let r = t.routes();
    assert!(r[1].is_shadowed_by(&r[0]));
    assert!(!r[2].is_shadowed_by(&r[0]));
    assert!(!r[0].is_shadowed_by(&r[1]));
}

#[test]
fn indexed_lookup_keeps_file_order() {
    let t = table(&[
        "path_prefix = \"/a\"\nmethods = [\"POST\"]",
        "path_prefix = \"/\"\nmethods = [\"PUT\"]",
        "path_prefix = \"/a/b\"",
        "path_prefix = \"/\"",
        "path_prefix = \"/a\"",
    ]);
    let find = |m: Method, p: &str| {
        t.find(&RequestParts {
            method: &m,
            host: None,
            path: p,
        })
        .map(|r| r.name.clone())
    };
    assert_eq!(find(Method::POST, "/a/b"), Some("r0".into()));
    assert_eq!(find(Method::PUT, "/a/b"), Some("r1".into()));
    assert_eq!(find(Method::GET, "/a/b/c"), Some("r2".into()));
    assert_eq!(
        find(Method::GET, "/a"),
        Some("r3".into()),
        "catch-all r3 precedes r4"
    );
    assert_eq!(find(Method::GET, "/zzz"), Some("r3".into()));
    assert_eq!(find(Method::GET, "/"), Some("r3".into()));
    let only = table(&["path_prefix = \"/a\""]);
    let get = Method::GET;
    assert!(
        only.find(&RequestParts {
            method: &get,
            host: None,
            path: "/b"
        })
        .is_none()
    );
    assert!(
        only.find(&RequestParts {
            method: &get,
            host: None,
            path: "/"
        })
        .is_none()
    );
}

fn deny_matcher(entry: &str) -> Rule {
    #[derive(serde::Deserialize)]
    struct W {
        m: RawMatcher,
    }
    let w: W = toml::from_str(&format!("m = {entry}")).expect("test matcher parses");
    Rule::compile_deny(&w.m).expect("compiles")
}

#[test]
fn two_common_names_match_an_allow_only_if_both_do_and_a_deny_if_either_does() {
    let mut id = identity();
    id.common_names = vec!["reporting-batch".into(), "admin".into()];
    assert!(
        !matcher(r#"{ cn = "reporting-batch" }"#)
            .unwrap()
            .matches(&id)
    );
    assert!(!matcher(r#"{ cn = "admin" }"#).unwrap().matches(&id));
    assert!(deny_matcher(r#"{ cn = "admin" }"#).matches(&id));
    assert!(deny_matcher(r#"{ cn = "reporting-batch" }"#).matches(&id));
    id.common_names = vec!["admin".into(), "admin".into()];
    assert!(matcher(r#"{ cn = "admin" }"#).unwrap().matches(&id));
    id.common_names = vec![];
    assert!(!matcher(r#"{ cn = "admin" }"#).unwrap().matches(&id));
    let mut id = identity();
    id.issuer_common_names = vec!["Issuing CA".into(), "Other CA".into()];
    assert!(
        !matcher(r#"{ issuer_cn = "Issuing CA" }"#)
            .unwrap()
            .matches(&id)
    );
    assert!(deny_matcher(r#"{ issuer_cn = "Other CA" }"#).matches(&id));
}

#[test]
fn uri_wildcards_never_match_dot_segments_escapes_or_invalid_spiffe_ids() {
    let allow = matcher(r#"{ uri = "spiffe://td/ns/*" }"#).unwrap();
    let deny = deny_matcher(r#"{ uri = "spiffe://td/ns/*" }"#);
    let with = |u: &str| {
        let mut id = identity();
        id.uris = vec![u.into()];
        id
    };
    assert!(allow.matches(&with("spiffe://td/ns/a/sa/b")));
    for sneaky in [
        "spiffe://td/ns/../admin",
        "spiffe://td/ns/./a",
        "spiffe://td/ns/a/..",
        "spiffe://td/ns/%2e%2e/admin",
        "spiffe://td/ns/a%2fb",
        "spiffe://td/ns//a",
        "spiffe://td/ns/a?x",
    ] {
        assert!(!allow.matches(&with(sneaky)), "{sneaky}");
        assert!(deny.matches(&with(sneaky)), "deny still sees {sneaky}");
    }
    // Not a valid SPIFFE ID (upper-case trust domain) → matches no allow entry, exact or not.
    let exact = matcher(r#"{ uri = "spiffe://td/ns/a" }"#).unwrap();
    assert!(!exact.matches(&with("spiffe://TD/ns/a")));
    // Non-SPIFFE URIs keep working, minus dot segments below a wildcard.
    let https = matcher(r#"{ uri = "https://svc.example/api/*" }"#).unwrap();
    assert!(https.matches(&with("https://svc.example/api/v1")));
    assert!(!https.matches(&with("https://svc.example/api/../admin")));
    // Config: SPIFFE IDs in rules must be valid.
    for bad in [
        r#"{ uri = "spiffe://TD/ns/a" }"#,
        r#"{ uri = "spiffe://td/ns/../a" }"#,
        r#"{ uri = "spiffe://td/ns//*" }"#,
        r#"{ uri = "spiffe://td/a%20b" }"#,
        r#"{ uri = "spiffe:///ns/a" }"#,
    ] {
        let e = matcher(bad).unwrap_err();
        assert!(e.contains("not a SPIFFE ID"), "{bad}: {e}");
    }
    assert!(matcher(r#"{ uri = "spiffe://td" }"#).is_ok());
    assert!(matcher(r#"{ uri = "spiffe://td/*" }"#).is_ok());
}

#[test]
fn a_wildcard_dns_name_in_a_certificate_does_not_match_a_wildcard_rule() {
    let allow = matcher(r#"{ dns = "*.example.com" }"#).unwrap();
    let deny = deny_matcher(r#"{ dns = "*.example.com" }"#);
    let with = |d: &str| {
        let mut id = identity();
        id.dns_names = vec![d.into()];
        id
    };
    assert!(allow.matches(&with("api.example.com")));
    assert!(!allow.matches(&with("*.example.com")));
    assert!(!allow.matches(&with("a.b.example.com")));
    assert!(!allow.matches(&with(".example.com")));
    assert!(
        deny.matches(&with("*.example.com")),
        "a deny still refuses it"
    );
    let exact = matcher(r#"{ dns = "api.example.com" }"#).unwrap();
    assert!(!exact.matches(&with("*.example.com")));
}
