//! Certificate-bound access tokens (RFC 8705, RFC 9068 profile, RFC 6750 refusals): tokens
//! minted by the test with keys it generates, presented over real mTLS.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certgate_testpki::jwt::{SigningKey, claims, jwks};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::*;

const ISS: &str = "https://idp.test";
const AUD: &str = "https://api.test";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A config with issuer `corp` reading `jwks.json`, a token route `/pay` (scope
/// `payments:read`, claim tenant = acme), a forwarding token route `/fwd`, and `/open`.
fn config(up: &str, issuer_extra: &str) -> String {
    format!(
        r#"{}{}
[token_issuers.corp]
issuer = "{ISS}"
audiences = ["{AUD}", "https://other.test"]
jwks = "jwks.json"
algorithms = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
leeway = "30s"
{issuer_extra}

[[routes]]
name = "pay"
path_prefix = "/pay"
upstream = "up"
allow = [{{ any = true }}]
token = {{ issuer = "corp", scopes = ["payments:read"], claims = {{ tenant = "acme" }} }}

[[routes]]
name = "fwd"
path_prefix = "/fwd"
upstream = "up"
allow = [{{ any = true }}]
token = {{ issuer = "corp", forward = true }}

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
    )
}

/// Claims bound to `der` with the route's tenant.
fn bound(der: &[u8]) -> Value {
    let mut c = claims(ISS, AUD, Some(der), now());
    c["tenant"] = json!("acme");
    c
}

async fn call(client: &TlsClient, path: &str, auth: &[&str], extra: &[(&str, &str)]) -> Reply {
    let mut req = http::Request::get(path).header("host", "localhost");
    for a in auth {
        req = req.header("authorization", *a);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    client
        .send(req.body(TestBody::empty()).expect("request"))
        .await
        .expect("exchange")
}

/// Waits until `/pay` with `token` answers `want`.
async fn wait_status(what: &str, client: &TlsClient, token: &str, want: u16, within: Duration) {
    wait_for(what, within, || async {
        match call(client, "/pay", &[token], &[]).await.status.as_u16() {
            s if s == want => Ok(()),
            s => Err(s.to_string()),
        }
    })
    .await
}

fn challenge(r: &Reply) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

const INVALID: &str = "Bearer realm=\"certgate\", error=\"invalid_token\"";

#[tokio::test]
async fn bound_tokens_are_verified_and_every_bad_token_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    pki.client(&pki.root, "thief", workload("thief"));
    let keys: Vec<SigningKey> = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ]
    .into_iter()
    .map(|a| SigningKey::generate(a, &format!("k-{a:?}")))
    .collect();
    pki.write("jwks.json", &jwks(&keys.iter().collect::<Vec<_>>()));
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let thief = TlsClient::new(&pki, gw.addr, Some("thief"));
    let es = &keys[0];

    // A valid bound token per algorithm; the upstream gets the token's identity headers,
    // not the client's spoofed ones, and not the token.
    for k in &keys {
        let t = k.sign(&bound(&ledger.der));
        let r = call(
            &client,
            "/pay/x",
            &[&format!("Bearer {t}")],
            &[
                ("x-token-subject", "admin"),
                ("x-token-scope", "everything"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}: {}", k.alg, r.text());
        let seen = up.seen();
        let h = &seen.last().unwrap().headers;
        assert_eq!(h.get("x-token-subject").unwrap(), "svc-ledger");
        assert_eq!(h.get("x-token-client-id").unwrap(), "ledger-client");
        assert_eq!(
            h.get("x-token-scope").unwrap(),
            "payments:read payments:write"
        );
        assert!(h.get("authorization").is_none(), "the token stays here");
    }
    gw.assert_metric(
        "certgate_token_validations_total{issuer=\"corp\",result=\"ok\"}",
        5.0,
    )
    .await;

    let sign = |f: &dyn Fn(&mut Value)| {
        let mut c = bound(&ledger.der);
        f(&mut c);
        es.sign(&c)
    };
    let t = now();
    // (case, Authorization, expected status, expected metric result)
    let hs_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(es.kid.clone());
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(
            &h,
            &bound(&ledger.der),
            &EncodingKey::from_secret(es.jwk.to_string().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(bound(&ledger.der).to_string())
    );
    let other_key = SigningKey::generate(Algorithm::ES256, &es.kid);
    let mut typ_jwt = Header::new(Algorithm::ES256);
    typ_jwt.kid = Some(es.kid.clone());
    typ_jwt.typ = Some("JWT".into());
    let mut no_typ = Header::new(Algorithm::ES256);
    no_typ.kid = Some(es.kid.clone());
    no_typ.typ = None;
    // A claims document whose `scope` (or `cnf`) is given twice: the first names what the
    // route needs, the last something else (or the other way round).
    let repeated = |member: &str, first: Value, last: Value| {
        let c = bound(&ledger.der).to_string();
        es.sign_raw(&format!(
            "{{\"{member}\":{first},{},\"{member}\":{last}}}",
            &c[1..c.len() - 1]
        ))
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            sign(&|c| {
                c["iat"] = json!(t - 7200);
                c["nbf"] = json!(t - 7200);
                c["exp"] = json!(t - 3600);
            }),
            401,
            "expired",
        ),
        (
            "nbf in the future",
            sign(&|c| c["nbf"] = json!(t + 3600)),
            401,
            "not_yet_valid",
        ),
        (
            "iat in the future",
            sign(&|c| c["iat"] = json!(t + 3600)),
            401,
            "not_yet_valid",
        ),
        (
            "wrong iss",
            sign(&|c| c["iss"] = json!("https://evil.test")),
            401,
            "wrong_issuer",
        ),
        (
            "no iss",
            sign(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            401,
            "wrong_issuer",
        ),
        (
            "wrong aud",
            sign(&|c| c["aud"] = json!("https://evil.test")),
            401,
            "wrong_audience",
        ),
        (
            "bad signature",
            other_key.sign(&bound(&ledger.der)),
            401,
            "bad_signature",
        ),
        (
            "unknown kid",
            SigningKey::generate(Algorithm::ES256, "nobody").sign(&bound(&ledger.der)),
            401,
            "unknown_key",
        ),
        ("alg none", alg_none, 401, "malformed"),
        (
            "HS256 with the public key",
            hs_with_public_key,
            401,
            "algorithm_not_allowed",
        ),
        (
            "typ JWT",
            es.sign_with(typ_jwt, &bound(&ledger.der)),
            401,
            "malformed",
        ),
        (
            "no typ",
            es.sign_with(no_typ, &bound(&ledger.der)),
            401,
            "malformed",
        ),
        (
            "iss as an array",
            sign(&|c| c["iss"] = json!([c["iss"].clone()])),
            401,
            "wrong_issuer",
        ),
        (
            "scope twice",
            repeated("scope", json!("payments:write"), json!("payments:read")),
            401,
            "malformed",
        ),
        (
            "tenant twice",
            repeated("tenant", json!("globex"), json!("acme")),
            401,
            "malformed",
        ),
        (
            "no cnf",
            sign(&|c| drop(c.as_object_mut().unwrap().remove("cnf"))),
            401,
            "unbound",
        ),
        (
            "missing scope",
            sign(&|c| c["scope"] = json!("payments:write")),
            403,
            "insufficient_scope",
        ),
        (
            "claim mismatch",
            sign(&|c| c["tenant"] = json!("globex")),
            403,
            "claim_mismatch",
        ),
        ("garbage", "not.a.token".to_string(), 401, "malformed"),
    ];
    for (case, token, status, result) in &cases {
        let before = gw
            .metric(&format!(
                "certgate_token_validations_total{{issuer=\"corp\",result=\"{result}\"}}"
            ))
            .await;
        let r = call(&client, "/pay/x", &[&format!("Bearer {token}")], &[]).await;
        assert_eq!(r.status, *status, "{case}: {}", r.text());
        if *status == 401 {
            assert_eq!(challenge(&r), INVALID, "{case}");
            assert!(
                r.text().contains("\"invalid_token\""),
                "{case}: {}",
                r.text()
            );
        } else if *result == "claim_mismatch" {
            // The token has the route's scope: the challenge does not point at it.
            assert_eq!(
                challenge(&r),
                "Bearer realm=\"certgate\", error=\"insufficient_scope\"",
                "{case}"
            );
            assert!(!r.text().contains("tenant") && !r.text().contains("payments"));
            gw.wait_for_log("\"token_unmet\":\"claim tenant\"").await;
        } else {
            assert_eq!(
                challenge(&r),
                "Bearer realm=\"certgate\", error=\"insufficient_scope\", scope=\"payments:read\"",
                "{case}"
            );
            assert!(!r.text().contains("tenant") && !r.text().contains("payments"));
            gw.wait_for_log("\"token_unmet\":\"scope payments:read\"")
                .await;
        }
        gw.assert_metric(
            &format!("certgate_token_validations_total{{issuer=\"corp\",result=\"{result}\"}}"),
            before + 1.0,
        )
        .await;
    }

    // Within the leeway: expired 10 s ago, leeway 30 s.
    let r = call(
        &client,
        "/pay/x",
        &[&format!("Bearer {}", sign(&|c| c["exp"] = json!(t - 10)))],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "within leeway");
    // An aud array containing an accepted audience; the lower-case scheme.
    let r = call(
        &client,
        "/pay/x",
        &[&format!(
            "bearer {}",
            sign(&|c| c["aud"] = json!(["https://x.test", "https://other.test"]))
        )],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "aud array, lower-case scheme");

    // Missing: a bare challenge.
    let r = call(&client, "/pay/x", &[], &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(challenge(&r), "Bearer realm=\"certgate\"");
    let r = call(&client, "/pay/x", &["Basic dXNlcjpwYXNz"], &[]).await;
    assert_eq!(r.status, 401, "another scheme is no token");

    // The stolen token: minted for ledger, replayed with another valid certificate.
    let stolen = es.sign(&bound(&ledger.der));
    let r = call(&thief, "/pay/x", &[&format!("Bearer {stolen}")], &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(challenge(&r), INVALID);
    gw.assert_metric(
        "certgate_token_validations_total{issuer=\"corp\",result=\"binding_mismatch\"}",
        1.0,
    )
    .await;
    // ... and still good for its owner.
    let r = call(&client, "/pay/x", &[&format!("Bearer {stolen}")], &[]).await;
    assert_eq!(r.status, 200);

    // invalid_request: token in the query, two Authorization headers, a form body.
    let good = format!("Bearer {stolen}");
    for (case, path, auth, extra) in [
        (
            "query",
            format!("/pay/x?access_token={stolen}"),
            vec![],
            vec![],
        ),
        (
            "two headers",
            "/pay/x".to_string(),
            vec![good.as_str(), good.as_str()],
            vec![],
        ),
        (
            "form",
            "/pay/x".to_string(),
            vec![],
            vec![("content-type", "application/x-www-form-urlencoded")],
        ),
    ] {
        let r = call(&client, &path, &auth, &extra).await;
        assert_eq!(r.status, 400, "{case}");
        assert!(r.text().contains("invalid_request"), "{case}: {}", r.text());
        assert!(
            challenge(&r).contains("error=\"invalid_request\""),
            "{case}"
        );
    }

    // Routes without a token requirement: Authorization passes, spoofed x-token-* does not.
    let r = call(
        &client,
        "/open",
        &["Bearer app-level"],
        &[("x-token-subject", "admin")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.seen();
    let h = &seen.last().unwrap().headers;
    assert_eq!(h.get("authorization").unwrap(), "Bearer app-level");
    assert!(h.get("x-token-subject").is_none());
    // forward = true: the verified token goes upstream too.
    let r = call(&client, "/fwd", &[&good], &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.seen()
            .last()
            .unwrap()
            .headers
            .get("authorization")
            .unwrap(),
        good.as_str()
    );

    // gRPC clients read the refusal from grpc-status.
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    let r = call(&client, "/pay/x", &[], &grpc).await;
    assert_eq!(
        (
            r.status.as_u16(),
            r.headers.get("grpc-status").unwrap().to_str().unwrap()
        ),
        (200, "16")
    );
    let r = call(
        &client,
        "/pay/x",
        &[&format!("Bearer {}", sign(&|c| c["scope"] = json!("x")))],
        &grpc,
    )
    .await;
    assert_eq!(r.headers.get("grpc-status").unwrap(), "7");

    // The log names the refused token's jti and subject, never the token.
    gw.wait_for_log("\"token_result\":\"binding_mismatch\"")
        .await;
    let logs = gw.logs();
    assert!(
        logs.contains("\"token_result\":\"binding_mismatch\""),
        "{logs}"
    );
    assert!(logs.contains("\"token_sub\":\"svc-ledger\""));
    for (_, token, _, _) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            signature.len() < 20 || !logs.contains(signature),
            "a token reached the log: {signature}"
        );
    }
    assert!(!logs.contains(&stolen));

    // The inventory shows which token principals came with each certificate: the thief's
    // certificate presented ledger's subject.
    let (_, inventory) = admin_get(gw.admin, "/inventory").await.unwrap();
    let records: Value = serde_json::from_str(&inventory).unwrap();
    let thief_record = records["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"].as_str().unwrap_or("").contains("thief"))
        .unwrap_or_else(|| panic!("{inventory}"));
    assert_eq!(
        thief_record["token_subjects"],
        json!(["svc-ledger"]),
        "{inventory}"
    );
    assert_eq!(thief_record["token_client_ids"], json!(["ledger-client"]));

    // The register holds the token clients and the signing keys that verified them, never a
    // token: ledger-client at corp, and the keys by kid and algorithm.
    let (_, clients) = admin_get(gw.admin, "/inventory?kind=token_client")
        .await
        .unwrap();
    let clients: Value = serde_json::from_str(&clients).unwrap();
    let ledger_client = clients["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == "ledger-client")
        .unwrap_or_else(|| panic!("{clients}"));
    assert_eq!(ledger_client["kind"], "token_client");
    assert_eq!(ledger_client["issuer"], "corp");
    assert!(ledger_client["requests_allowed"].as_u64().unwrap() > 0);
    assert!(
        clients["identities"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "token_client")
    );
    let (_, keys) = admin_get(gw.admin, "/inventory?kind=token_key")
        .await
        .unwrap();
    let keys: Value = serde_json::from_str(&keys).unwrap();
    let es256 = keys["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == "k-ES256")
        .unwrap_or_else(|| panic!("{keys}"));
    assert_eq!(
        (&es256["issuer"], &es256["serial"]),
        (&json!("corp"), &json!("ES256"))
    );
    assert!(!keys.to_string().contains(&stolen));
}

#[tokio::test]
async fn without_required_binding_a_token_bound_elsewhere_is_still_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let other = pki.client(&pki.root, "other", workload("other"));
    let key = SigningKey::generate(Algorithm::ES256, "k1");
    pki.write("jwks.json", &jwks(&[&key]));
    let gw = Gateway::start(&pki, &config(&up.url(), "require_binding = false")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let mut unbound = claims(ISS, AUD, None, now());
    unbound["tenant"] = json!("acme");
    let r = call(
        &client,
        "/pay",
        &[&format!("Bearer {}", key.sign(&unbound))],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "unbound passes: {}", r.text());
    let r = call(
        &client,
        "/pay",
        &[&format!("Bearer {}", key.sign(&bound(&other.der)))],
        &[],
    )
    .await;
    assert_eq!(r.status, 401, "bound to another certificate");
    let r = call(
        &client,
        "/pay",
        &[&format!("Bearer {}", key.sign(&bound(&ledger.der)))],
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        gw.logs().contains("require_binding = false"),
        "the config warning is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_file_rotation_under_load() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let old = SigningKey::generate(Algorithm::ES256, "old");
    let new = SigningKey::generate(Algorithm::ES256, "new");
    pki.write("jwks.json", &jwks(&[&old]));
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let old_token = format!("Bearer {}", old.sign(&bound(&ledger.der)));
    let new_token = format!("Bearer {}", new.sign(&bound(&ledger.der)));
    assert_eq!(call(&client, "/pay", &[&new_token], &[]).await.status, 401);

    // Load with the old token on kept-alive connections while the JWKS gains the new key.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, token, stop) = (
            TlsClient::new(&pki, gw.addr, Some("ledger")),
            old_token.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut send = client.h1().await.unwrap();
            let mut statuses = Vec::new();
            for _ in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let req = http::Request::get("/pay/load")
                    .header("host", "localhost")
                    .header("authorization", &token)
                    .body(TestBody::empty())
                    .unwrap();
                let r = read_reply(send.send_request(req).await.unwrap())
                    .await
                    .unwrap();
                statuses.push(r.status.as_u16());
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    pki.write("jwks.json", &jwks(&[&old, &new]));
    wait_status(
        "the new key to be picked up",
        &client,
        &new_token,
        200,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let statuses = w.await.unwrap();
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed during rotation"
        );
    }
    assert!(total > 20, "load ran ({total} requests)");

    // The old key retired: its tokens stop working, the new ones keep going.
    pki.write("jwks.json", &jwks(&[&new]));
    wait_status(
        "the old key to be retired",
        &client,
        &old_token,
        401,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(call(&client, "/pay", &[&new_token], &[]).await.status, 200);
    // A broken JWKS file is refused as a reload; the running keys stay.
    pki.write("jwks.json", "{\"keys\": [");
    gw.wait_for_log("config reload refused").await;
    assert_eq!(call(&client, "/pay", &[&new_token], &[]).await.status, 200);
}

#[test]
fn check_validates_issuers_keys_and_references() {
    let pki = Pki::new();
    let es = SigningKey::generate(Algorithm::ES256, "es");
    let rs = SigningKey::generate(Algorithm::RS256, "rs");
    let mut jwks_doc: Value = serde_json::from_str(&jwks(&[&es, &rs])).unwrap();
    jwks_doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}));
    pki.write("jwks.json", &jwks_doc.to_string());
    let write = |issuer_extra: &str, route_issuer: &str| {
        let body = format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{}\n\
             [upstreams.up]\nurl = \"http://127.0.0.1:1\"\n\
             [token_issuers.corp]\nissuer = \"{ISS}\"\naudiences = [\"{AUD}\"]\njwks = \"jwks.json\"\n{issuer_extra}\n\
             [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n\
             token = {{ issuer = \"{route_issuer}\" }}\n",
            client_auth("require", "")
        );
        pki.write("certgate.toml", &body)
    };
    let check = |p: &std::path::Path| run_cli(&["check", "--config", p.to_str().unwrap()]);

    let (code, out, err) = check(&write("algorithms = [\"ES256\"]", "corp"));
    assert_eq!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("kid \\\"rs\\\"") || all.contains("kid \"rs\""),
        "{all}"
    );
    assert!(all.contains("not in the issuer's algorithms"), "{all}");
    assert!(all.contains("symmetric"), "{all}");

    for (extra, route_issuer, needle) in [
        (
            "algorithms = [\"HS256\"]",
            "corp",
            "token_issuers.corp.algorithms",
        ),
        (
            "algorithms = [\"none\"]",
            "corp",
            "token_issuers.corp.algorithms",
        ),
        ("", "nobody", "routes[0].token.issuer"),
        ("jwks_ca = \"ca.pem\"", "corp", "token_issuers.corp.jwks_ca"),
    ] {
        let (code, out, err) = check(&write(extra, route_issuer));
        assert_ne!(code, 0, "{extra} / {route_issuer} must fail");
        assert!(
            format!("{out}{err}").contains(needle),
            "{needle}: {out}{err}"
        );
    }
    pki.write(
        "jwks.json",
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
    );
    let (code, out, err) = check(&write("", "corp"));
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains("no usable key"),
        "{out}{err}"
    );
}

/// The issuer `corp` with its JWKS at `url`, a token route `/pay` and an open route.
fn url_config(up: &str, url: &str, extra: &str) -> String {
    config(up, "").replace(
        "jwks = \"jwks.json\"",
        &format!("jwks = \"{url}\"\n{extra}"),
    )
}

#[tokio::test]
async fn jwks_url_over_https_and_an_unknown_kid_refetches_at_most_every_30s() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let (a, b, c) = (
        SigningKey::generate(Algorithm::ES256, "a"),
        SigningKey::generate(Algorithm::RS256, "b"),
        SigningKey::generate(Algorithm::EdDSA, "c"),
    );
    let idp = DocServer::start(&jwks(&[&a]), Some(localhost_tls(&pki))).await;
    let url = format!("https://localhost:{}/jwks", idp.addr.port());
    let gw = Gateway::start(
        &pki,
        &url_config(
            &up.url(),
            &url,
            "jwks_ca = \"ca.pem\"\njwks_refresh = \"1h\"",
        ),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let bearer = |k: &SigningKey| format!("Bearer {}", k.sign(&bound(&ledger.der)));
    // Fetched before the first request is served.
    assert_eq!(call(&client, "/pay", &[&bearer(&a)], &[]).await.status, 200);
    assert_eq!(idp.hits(), 1);

    // The IdP rotates in key b: the first token naming it is refused and triggers a refetch.
    idp.set(200, &jwks(&[&a, &b]));
    assert_eq!(call(&client, "/pay", &[&bearer(&b)], &[]).await.status, 401);
    idp.wait_hits(2).await;
    wait_status(
        "key b to arrive",
        &client,
        &bearer(&b),
        200,
        Duration::from_secs(5),
    )
    .await;
    // Another unknown kid within 30 s: refused, and no fetch (a flood of made-up kids cannot
    // hammer the IdP).
    idp.set(200, &jwks(&[&a, &b, &c]));
    for _ in 0..5 {
        assert_eq!(call(&client, "/pay", &[&bearer(&c)], &[]).await.status, 401);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idp.hits(), 2, "refetches are bounded");
    gw.assert_metric(
        "certgate_jwks_fetches_total{issuer=\"corp\",result=\"ok\"}",
        2.0,
    )
    .await;
    // One for b before its refetch (perhaps more while it ran), five for c.
    assert!(
        gw.metric("certgate_token_validations_total{issuer=\"corp\",result=\"unknown_key\"}")
            .await
            >= 6.0
    );
}

#[tokio::test]
async fn a_jwks_url_that_is_down_or_serves_junk_keeps_the_last_good_keys() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let a = SigningKey::generate(Algorithm::ES256, "a");
    let idp = DocServer::start(&jwks(&[&a]), None).await;
    let url = format!("http://127.0.0.1:{}/jwks", idp.addr.port());
    let gw = Gateway::start(&pki, &url_config(&up.url(), &url, "jwks_refresh = \"1s\"")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let token = format!("Bearer {}", a.sign(&bound(&ledger.der)));
    assert_eq!(call(&client, "/pay", &[&token], &[]).await.status, 200);

    // Unchanged: a conditional GET answered 304.
    idp.wait_hits(2).await;
    gw.assert_metric(
        "certgate_jwks_fetches_total{issuer=\"corp\",result=\"not_modified\"}",
        1.0,
    )
    .await;
    for (status, body, result) in [
        (200, "<html>maintenance</html>", "invalid"),
        (200, "{\"keys\": []}", "invalid"),
        (
            200,
            "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
            "invalid",
        ),
        (503, "", "error"),
    ] {
        let seen = idp.hits();
        idp.set(status, body);
        idp.wait_hits(seen + 1).await;
        let series = format!("certgate_jwks_fetches_total{{issuer=\"corp\",result=\"{result}\"}}");
        wait_for(
            "the fetch result to be counted",
            Duration::from_secs(2),
            || async {
                match gw.metric(&series).await {
                    n if n >= 1.0 => Ok(()),
                    n => Err(n.to_string()),
                }
            },
        )
        .await;
        assert!(
            gw.metric(&series).await >= 1.0,
            "{body:?} counted as {result}"
        );
        assert_eq!(
            call(&client, "/pay", &[&token], &[]).await.status,
            200,
            "{body:?}: the last good keys stay"
        );
    }
    // Down altogether, and a reload on top: the keys are live state and stay.
    idp.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200);
    assert_eq!(call(&client, "/pay", &[&token], &[]).await.status, 200);
    assert!(
        gw.logs()
            .contains("JWKS fetch failed; keeping the last good keys")
    );
}

#[test]
fn explain_walks_through_each_token_check() {
    let pki = Pki::new();
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    pki.client(&pki.root, "thief", workload("thief"));
    let key = SigningKey::generate(Algorithm::ES256, "k1");
    pki.write("jwks.json", &jwks(&[&key]));
    let config = pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{}",
            config("http://127.0.0.1:1", "")
        ),
    );
    let good = key.sign(&bound(&ledger.der));
    pki.write("token.jwt", &format!("{good}\n"));
    let explain = |cert: &str, token: &str| {
        let (cfg, cert) = (config.to_str().unwrap(), pki.path(cert));
        run_cli(&[
            "explain",
            "--config",
            cfg,
            "--cert",
            cert.to_str().unwrap(),
            "--path",
            "/pay/1",
            "--token",
            token,
        ])
    };
    let token_file = format!("@{}", pki.path("token.jwt").display());
    let (code, out, err) = explain("ledger.pem", &token_file);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "alg ES256, kid \"k1\", typ at+jwt",
        "signature verifies",
        "names this certificate",
        "sub svc-ledger",
        "token accepted",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let (code, out, _) = explain("thief.pem", &good);
    assert_eq!(code, 3);
    assert!(
        out.contains("bound to another certificate: binding_mismatch -> 401 invalid_token"),
        "{out}"
    );
    let mut c = bound(&ledger.der);
    c["scope"] = json!("payments:write");
    let (code, out, _) = explain("ledger.pem", &key.sign(&c));
    assert_eq!(code, 3);
    assert!(out.contains("insufficient_scope -> 403"), "{out}");
    assert!(out.contains("needs scope \"payments:read\""), "{out}");
    let mut c = bound(&ledger.der);
    c["tenant"] = json!("globex");
    let (code, out, _) = explain("ledger.pem", &key.sign(&c));
    assert_eq!(code, 3);
    assert!(
        out.contains(
            "needs claim \"tenant\" = \"acme\", the token has \"globex\": claim_mismatch -> 403"
        ),
        "{out}"
    );
    let (code, out, _) = explain("ledger.pem", "junk");
    assert_eq!(code, 3);
    assert!(out.contains("malformed -> 401"), "{out}");
    // `check` lists the issuer and which routes need its tokens.
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("issuer     corp iss https://idp.test"),
        "{out}"
    );
    assert!(out.contains("token from corp with payments:read"), "{out}");
}

#[tokio::test]
async fn a_reload_that_brings_a_jwks_url_fetches_it_before_going_live() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let (file_key, url_key) = (
        SigningKey::generate(Algorithm::ES256, "file"),
        SigningKey::generate(Algorithm::ES256, "url"),
    );
    pki.write("jwks.json", &jwks(&[&file_key]));
    let idp = DocServer::start(&jwks(&[&url_key]), None).await;
    let gw = Gateway::start(&pki, &config(&up.url(), "")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let token = format!("Bearer {}", url_key.sign(&bound(&ledger.der)));
    assert_eq!(call(&client, "/pay", &[&token], &[]).await.status, 401);
    // Same ports: rewrite the config the gateway runs with, JWKS now from the URL.
    let path = pki.path("certgate.toml");
    let running = std::fs::read_to_string(&path).unwrap();
    let url = format!("http://127.0.0.1:{}/jwks", idp.addr.port());
    std::fs::write(
        &path,
        running.replace("jwks = \"jwks.json\"", &format!("jwks = \"{url}\"")),
    )
    .unwrap();
    let (status, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call(&client, "/pay", &[&token], &[]).await.status,
        200,
        "the first request after the reload already has the keys"
    );
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn an_audit_route_forwards_a_request_whose_token_is_refused_without_token_headers() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "ledger", workload("ledger"));
    let key = SigningKey::generate(Algorithm::ES256, "k1");
    pki.write("jwks.json", &jwks(&[&key]));
    let body = config(&up.url(), "").replace(
        "name = \"fwd\"\n",
        "name = \"fwd\"\nenforcement = \"audit\"\n",
    );
    let gw = Gateway::start(&pki, &body).await;
    let client = TlsClient::new(&pki, gw.addr, Some("ledger"));
    let r = call(&client, "/fwd", &[], &[("x-token-subject", "admin")]).await;
    assert_eq!(r.status, 200, "audit: forwarded");
    let seen = up.seen();
    assert!(seen[0].headers.get("x-token-subject").is_none());
    gw.assert_metric(
        "certgate_token_validations_total{issuer=\"corp\",result=\"missing\"}",
        1.0,
    )
    .await;
    gw.assert_metric(
        "certgate_authz_decisions_total{decision=\"would_deny\",route=\"fwd\"}",
        1.0,
    )
    .await;
    // The enforced route still refuses.
    assert_eq!(call(&client, "/pay", &[], &[]).await.status, 401);
}

#[tokio::test]
async fn a_websocket_opened_with_a_token_is_closed_when_the_token_expires() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let pki = Pki::new();
    let ledger = pki.client(&pki.root, "ledger", workload("ledger"));
    let key = SigningKey::generate(Algorithm::ES256, "k1");
    pki.write("jwks.json", &jwks(&[&key]));
    let ws_addr = websocket_upstream().await;
    let gw = Gateway::start(
        &pki,
        &format!(
            "{}{}\n[token_issuers.corp]\nissuer = \"{ISS}\"\naudiences = [\"{AUD}\"]\njwks = \"jwks.json\"\nalgorithms = [\"ES256\"]\nleeway = \"0s\"\n\n[[routes]]\nname = \"ws\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\ntoken = {{ issuer = \"corp\" }}\n",
            client_auth("require", ""),
            upstream_section("up", &format!("http://{ws_addr}"), "")
        ),
    )
    .await;
    let mut c = claims(ISS, AUD, Some(&ledger.der), now());
    c["exp"] = json!(now() + 2);
    let auth = format!("Bearer {}", key.sign(&c));
    let opened = Instant::now();
    let mut ws = ws_connect_with(&pki, &gw, "ledger", "/ws", &[("authorization", &auth)])
        .await
        .expect("upgrade with a valid token");
    ws.send(Message::text("hello")).await.unwrap();
    assert!(ws.next().await.unwrap().unwrap().is_text());
    // Kept busy, the tunnel still ends at the token's exp (plus the second it rounds to).
    let ended = loop {
        if ws.send(Message::text("still here")).await.is_err() {
            break opened.elapsed();
        }
        match tokio::time::timeout(Duration::from_secs(6), ws.next()).await {
            Ok(Some(Ok(_))) => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => break opened.elapsed(),
        }
        assert!(
            opened.elapsed() < Duration::from_secs(8),
            "the tunnel outlived its token"
        );
    };
    assert!(ended >= Duration::from_secs(1), "closed early: {ended:?}");
    gw.wait_for_log("access token expired while the connection was open")
        .await;
}
