use super::*;
use crate::authn::identity::ClientIdentity;
use crate::config::RawMatcher;
use crate::config::{OwnerPolicy, RawRoute};

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
    compile(0, &raw)
}

/// Compiles a route; its upstream may be "up", its token issuer "corp".
fn compile(index: usize, raw: &RawRoute) -> Result<Route, RouteError> {
    let upstreams = std::collections::HashMap::from([("up".to_string(), 0)]);
    let issuers = std::collections::HashMap::from([("corp".to_string(), 0)]);
    let links = Links {
        upstreams: &upstreams,
        issuers: &issuers,
        limits: &crate::limits::registry::LimitRegistry::default(),
    };
    Route::compile(index, raw, &links)
}

fn matcher(entry: &str) -> Result<Rule, rules::MatcherError> {
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
        assert!(err.to_string().contains(want), "{e}: {err}");
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
    let e = compile(0, &raw).unwrap_err();
    assert_eq!(e.key, "upstream");
    for prefix in ["p", "/a/../b", "/a/", "/a%2fb"] {
        let raw: RawRoute = toml::from_str(&format!(
            "name = \"r\"\nupstream = \"up\"\npath_prefix = \"{prefix}\""
        ))
        .unwrap();
        let e = compile(0, &raw).unwrap_err();
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
                compile(i, &raw).unwrap()
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
        t.find(&RequestParts::new(m, h, p)).map(|r| r.name.as_str())
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
    assert!(
        t2.find(&RequestParts::new(&get, None, "/paymentsX"))
            .is_none()
    );
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
        t.find(&RequestParts::new(&m, None, p))
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
    assert!(only.find(&RequestParts::new(&get, None, "/b")).is_none());
    assert!(only.find(&RequestParts::new(&get, None, "/")).is_none());
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
        assert!(e.to_string().contains("not a SPIFFE ID"), "{bad}: {e}");
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

/// A route from `body`, with a token requirement when it names `token = { issuer = "corp" … }`.
fn decided_route(body: &str) -> Route {
    let raw: RawRoute = toml::from_str(&format!(
        "name = \"r\"\nupstream = \"up\"\npath_prefix = \"/p\"\n{body}"
    ))
    .expect("test route parses");
    compile(0, &raw).unwrap()
}

fn unowned(policy: OwnerPolicy) -> owners::Owners {
    owners::Owners::new(
        Vec::new(),
        &crate::config::RawOwners {
            file: Some("owners.toml".into()),
            unowned: policy,
            ..Default::default()
        },
    )
}

/// Decides a GET of `/p/x` with no token presented (the token callback must not be reached
/// unless the route needs a token and the policy let the request through).
fn decide_get<'r>(
    route: &'r Route,
    credential: &Credential<'_>,
    owners: &owners::Owners,
    params: bool,
    upgrade: bool,
) -> Decision<'r> {
    let parts = RequestParts {
        params,
        upgrade,
        ..RequestParts::new(&Method::GET, None, "/p/x")
    };
    decide(&parts, credential, route, owners, |_| {
        Err(crate::authn::token::TokenFailure::Missing)
    })
}

#[test]
fn decide_refuses_what_policy_refuses() {
    let id = identity();
    let cert = Credential::of(Some(&id), None);
    let none = owners::Owners::default();
    let allow = decided_route("allow = [{ cn = \"reporting-batch\" }]");
    let d = decide_get(&allow, &cert, &none, false, false);
    assert_eq!(
        (d.verdict, d.decided_by, d.refusal),
        (Some(Verdict::Allow), DecidedBy::Allow(0), None)
    );
    let d = decide_get(&allow, &Credential::Anonymous, &none, false, false);
    assert_eq!(d.refusal, Some(Refusal::Unauthenticated));
    let deny = decided_route("allow = [{ any = true }]\ndeny = [{ ou = \"finance\" }]");
    let d = decide_get(&deny, &cert, &none, false, false);
    assert_eq!(
        (d.verdict, d.decided_by, d.refusal),
        (
            Some(Verdict::Deny),
            DecidedBy::Deny(0),
            Some(Refusal::Forbidden)
        )
    );
    let other = decided_route("allow = [{ cn = \"someone-else\" }]");
    let d = decide_get(&other, &cert, &none, false, false);
    assert_eq!(d.decided_by, DecidedBy::NoAllowMatched);
    assert_eq!(d.refusal, Some(Refusal::Forbidden));
    // Path parameters are refused before policy; a WebSocket upgrade after it.
    let d = decide_get(&allow, &cert, &none, true, false);
    assert_eq!((d.verdict, d.refusal), (None, Some(Refusal::PathParams)));
    let ok = decided_route("allow = [{ any = true }]\nallow_path_params = true");
    assert_eq!(decide_get(&ok, &cert, &none, true, false).refusal, None);
    let no_ws = decided_route("allow = [{ any = true }]\nwebsocket = false");
    let d = decide_get(&no_ws, &cert, &none, false, true);
    assert_eq!(d.refusal, Some(Refusal::UpgradeRefused));
    let d = decide_get(&no_ws, &Credential::Anonymous, &none, false, true);
    assert_eq!(d.refusal, Some(Refusal::Unauthenticated), "policy first");
}

#[test]
fn decide_applies_owner_policy_audit_and_shadow() {
    let id = identity();
    let cert = Credential::of(Some(&id), None);
    let route =
        decided_route("allow = [{ any = true }]\nshadow = { allow = [{ cn = \"other\" }] }");
    let d = decide_get(&route, &cert, &unowned(OwnerPolicy::Deny), false, false);
    assert_eq!(
        d.decided_by,
        DecidedBy::Governance(owners::Finding::Unowned)
    );
    assert_eq!(d.refusal, Some(Refusal::Forbidden));
    assert_eq!(d.shadow, Some(false));
    let d = decide_get(&route, &cert, &unowned(OwnerPolicy::Audit), false, false);
    assert_eq!(
        (d.verdict, d.would, d.refusal),
        (Some(Verdict::WouldDeny), Some("owner"), None)
    );
    assert_eq!(d.owner_finding, Some(owners::Finding::Unowned));
    // An anonymous caller is never judged by the owner policy.
    let open = decided_route("allow_unauthenticated = true");
    let d = decide_get(
        &open,
        &Credential::Anonymous,
        &unowned(OwnerPolicy::Deny),
        false,
        false,
    );
    assert_eq!((d.verdict, d.owner_finding), (Some(Verdict::Allow), None));
    // An audit route forwards what its policy refuses, and says so.
    let audit = decided_route("allow = [{ cn = \"someone-else\" }]\nenforcement = \"audit\"");
    let d = decide_get(&audit, &cert, &owners::Owners::default(), false, false);
    assert_eq!(
        (d.verdict, d.would, d.refusal),
        (Some(Verdict::WouldDeny), Some("policy"), None)
    );
}

#[test]
fn decide_asks_for_the_token_only_when_the_policy_lets_the_request_through() {
    use crate::authn::token::{TokenFailure, VerifiedToken};
    let id = identity();
    let cert = Credential::of(Some(&id), None);
    let none = owners::Owners::default();
    let parts = RequestParts::new(&Method::GET, None, "/p/x");
    let granted = VerifiedToken {
        scopes: vec!["read".into()],
        ..Default::default()
    };
    let route = |audit: bool| {
        let mode = if audit { "audit" } else { "enforce" };
        decided_route(&format!(
            "allow = [{{ cn = \"reporting-batch\" }}]\nenforcement = \"{mode}\"\ntoken = {{ issuer = \"corp\", scopes = [\"read\", \"write\"] }}"
        ))
    };
    let enforced = route(false);
    let mut asked = false;
    let d = decide(&parts, &Credential::Anonymous, &enforced, &none, |_| {
        asked = true;
        Ok(&granted)
    });
    assert!(!asked, "a refused caller's token is never verified");
    assert_eq!((d.refusal, d.token), (Some(Refusal::Unauthenticated), None));
    let d = decide(&parts, &cert, &enforced, &none, |_| Ok(&granted));
    let lacks = TokenVerdict::Refused {
        failure: TokenFailure::InsufficientScope,
        unmet: Some(Unmet::Scope("write")),
    };
    assert_eq!(d.token, Some(lacks));
    assert_eq!(
        d.refusal,
        Some(Refusal::Token {
            failure: TokenFailure::InsufficientScope,
            unmet: Some(Unmet::Scope("write"))
        })
    );
    let d = decide(&parts, &cert, &enforced, &none, |_| {
        Err(TokenFailure::BindingMismatch)
    });
    assert!(matches!(
        d.refusal,
        Some(Refusal::Token {
            failure: TokenFailure::BindingMismatch,
            unmet: None
        })
    ));
    // Audit: the token's failure is recorded and the request forwarded.
    let audit = route(true);
    let d = decide(&parts, &cert, &audit, &none, |_| Err(TokenFailure::Expired));
    assert_eq!(
        (d.verdict, d.would, d.refusal),
        (Some(Verdict::WouldDeny), Some("token"), None)
    );
    let both = VerifiedToken {
        scopes: vec!["write".into(), "read".into()],
        ..Default::default()
    };
    let d = decide(&parts, &cert, &enforced, &none, |_| Ok(&both));
    assert_eq!((d.token, d.refusal), (Some(TokenVerdict::Accepted), None));
}

#[test]
fn decide_lets_an_api_key_call_only_the_routes_its_record_lists() {
    use crate::authn::apikey::{ApiKeys, Pepper, format};
    use crate::config::{RawKey, RawKeysFile};
    let pepper = b"0123456789abcdef0123456789abcdef";
    let (id, key) = format::generate().unwrap();
    let raw = RawKeysFile {
        key: vec![RawKey {
            id,
            owner: "team-erp".into(),
            hash: Pepper::new(pepper).unwrap().hash(&key),
            created: "2026-12-01T00:00:00Z".into(),
            sunset: "2099-01-01".into(),
            routes: vec!["r".into()],
            cutover: Default::default(),
            revoked: false,
        }],
    };
    let keys = ApiKeys::compile(&raw, Pepper::new(pepper).unwrap(), |_| true).unwrap();
    let record = keys.check(&key, 0).unwrap();
    let none = owners::Owners::default();
    let listed = decided_route("api_keys = true\nallow = [{ cn = \"nobody\" }]");
    let d = decide_get(&listed, &Credential::ApiKey(record), &none, false, false);
    assert_eq!(
        (d.verdict, d.decided_by, d.refusal),
        (Some(Verdict::Allow), DecidedBy::ApiKey, None),
        "the record, not the certificate rules, decides for a key"
    );
    let raw: RawRoute = toml::from_str(
        "name = \"other\"\nupstream = \"up\"\npath_prefix = \"/p\"\napi_keys = true\nallow = [{ any = true }]",
    )
    .unwrap();
    let unlisted = compile(0, &raw).unwrap();
    let d = decide_get(&unlisted, &Credential::ApiKey(record), &none, false, false);
    assert_eq!(d.decided_by, DecidedBy::ApiKeyRouteNotListed);
    assert_eq!(d.refusal, Some(Refusal::Forbidden));
    let no_keys = decided_route("allow = [{ any = true }]");
    let d = decide_get(&no_keys, &Credential::ApiKey(record), &none, false, false);
    assert_eq!(
        d.refusal,
        Some(Refusal::Forbidden),
        "a route without api_keys"
    );
}
