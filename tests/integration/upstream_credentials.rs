//! `[upstream_credentials]`: secrets an upstream expects, held by the gateway — a static header
//! from a file, or an OAuth2 access token the gateway obtains from a real token endpoint run by
//! the test (client credentials with `private_key_jwt`, `tls_client_auth`, `client_secret_basic`).

use std::time::Duration;

use certgate_testpki::LeafSpec;

use crate::common::*;

/// `[upstream_credentials]`: the secret a legacy upstream expects, held by the gateway.
fn credential_config(up: &Upstream, extra: &str) -> String {
    credential_config_at(&up.url(), extra)
}

#[tokio::test]
async fn the_gateway_holds_the_upstreams_secret_and_rotates_it_on_reload() {
    let pki = Pki::new();
    pki.client(&pki.root, "erp", LeafSpec::client("erp"));
    pki.write("erp.key", "first-secret\n");
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &credential_config(&up, "expires = \"2099-01-01\"")).await;
    let client = TlsClient::new(&pki, gw.addr, Some("erp"));
    let r = client
        .send(
            http::Request::get("/x")
                .header("host", "localhost")
                .header("x-api-key", "what-the-client-claims")
                .body(TestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = up.seen().pop().unwrap();
    let values: Vec<_> = seen.headers.get_all("x-api-key").iter().collect();
    assert_eq!(
        values,
        ["first-secret"],
        "the gateway's secret, not the client's copy"
    );
    // Rotating the file rotates the secret, without a restart.
    pki.write("erp.key", "second-secret\n");
    wait_for(
        "the rotated secret to be sent",
        Duration::from_secs(10),
        || async {
            client.get("/x").await.unwrap();
            let seen = up.seen().pop().unwrap();
            match seen.headers["x-api-key"].to_str().unwrap() {
                "second-secret" => Ok(()),
                other => Err(other.to_string()),
            }
        },
    )
    .await;
    assert!(!gw.logs().contains("first-secret") && !gw.logs().contains("second-secret"));
    // The register lists it with its owner, expiry and last injection, never its value.
    let (_, body) = admin_get(gw.admin, "/inventory?kind=upstream_credential")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = &v["identities"][0];
    assert_eq!(
        (&c["subject"], &c["owner"]),
        (&"erp".into(), &"team-erp".into()),
        "{body}"
    );
    assert_eq!(c["serial"], "header x-api-key");
    assert_eq!(c["not_after"].as_i64(), Some(4_070_908_800), "2099-01-01");
    assert!(c["last_seen"].as_i64().unwrap() > 0 && c["requests_allowed"].as_u64().unwrap() >= 2);
    assert!(!body.contains("secret"), "{body}");
}

#[test]
fn check_validates_upstream_credentials() {
    let pki = Pki::new();
    pki.write("erp.key", "s3cret\n");
    let up_url = "http://127.0.0.1:9";
    let config = |extra: &str| {
        let body = credential_config_at(up_url, extra);
        write_check_config(&pki, &body)
    };
    let run = |extra: &str| {
        let c = config(extra);
        run_cli(&["check", "--config", c.to_str().unwrap()])
    };
    let (code, out, err) = run("expires = \"2099-01-01\"");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("credential erp in x-api-key of team-erp"),
        "{out}"
    );
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "never printed"
    );
    // Inside the expiry window: a warning.
    let soon = humantime::format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(86400))
        .to_string();
    let (code, out, err) = run(&format!("expires = \"{}\"", &soon[..10]));
    assert_eq!(code, 0);
    assert!(
        format!("{out}{err}").contains("upstream_credentials.erp expires"),
        "{out}{err}"
    );
    // A credential file with nothing in it, an unknown reference.
    pki.write("erp.key", "\n");
    let (code, _, err) = run("");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not one line of visible characters"), "{err}");
    pki.write("erp.key", "s3cret\n");
    let body =
        credential_config_at(up_url, "").replace("credential = \"erp\"", "credential = \"nope\"");
    let c = write_check_config(&pki, &body);
    let (code, _, err) = run_cli(&["check", "--config", c.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("upstreams.up.credential: no [upstream_credentials.nope]"),
        "{err}"
    );
    // Keys of the other kind are refused, not ignored.
    let body = credential_config_at(up_url, "")
        .replace("kind = \"header\"", "kind = \"oauth2_client_credentials\"");
    let c = write_check_config(&pki, &body);
    let (code, _, err) = run_cli(&["check", "--config", c.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("upstream_credentials.erp.header: does not apply to kind = \"oauth2_client_credentials\""),
        "{err}"
    );
}

fn credential_config_at(url: &str, extra: &str) -> String {
    format!(
        "{}[upstreams.up]\nurl = \"{url}\"\ncredential = \"erp\"\n\
         [upstream_credentials.erp]\nkind = \"header\"\nheader = \"x-api-key\"\nvalue_file = \"erp.key\"\nowner = \"team-erp\"\n{extra}\n\
         [[routes]]\nname = \"erp\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ cn = \"erp\" }}]\n",
        client_auth("require", ""),
    )
}

const SCOPE: &str = "pay:write pay:read";

/// Route `/pay` reaches upstream `pay`, which holds the OAuth2 credential `pay` (`credential`:
/// its token_url, client_auth and files); route `/open` reaches the same server without one.
fn oauth2_config(up: &Upstream, credential: &str) -> String {
    oauth2_config_at(&up.url(), credential)
}

fn private_key_jwt(ep: &TokenEndpoint) -> String {
    format!(
        "token_url = \"{}\"\nclient_auth = \"private_key_jwt\"\nkey = \"certgate-gw-key.pem\"",
        ep.url()
    )
}

/// The PKI with a caller (`app`) and the gateway's own client (`certgate-gw`), and a token
/// endpoint that knows `certgate-gw` as `client`.
async fn token_setup(
    client: impl FnOnce(&certgate_testpki::Issued) -> TokenClient,
) -> (Pki, TokenEndpoint) {
    let pki = Pki::new();
    pki.client(&pki.root, "app", LeafSpec::client("app"));
    let gw = pki.client(&pki.root, "certgate-gw", LeafSpec::client("certgate-gw"));
    let ep = TokenEndpoint::start(&pki, client(&gw)).await;
    (pki, ep)
}

fn jwt_client(gw: &certgate_testpki::Issued) -> TokenClient {
    TokenClient {
        id: "certgate-gw".into(),
        assertion_key: Some(ec_public_key(&gw.der)),
        secret: None,
        cert_cn: None,
        scope: SCOPE.into(),
    }
}

async fn call(client: &TlsClient, path: &str, authorization: Option<&str>) -> Reply {
    let headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    client.get_with(path, &headers).await
}

fn last_authorization(up: &Upstream) -> Vec<String> {
    let seen = up.seen().pop().expect("a request reached the upstream");
    seen.headers
        .get_all("authorization")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_private_key_jwt_token_is_fetched_once_shared_and_refreshed_before_it_expires() {
    let (pki, ep) = token_setup(jwt_client).await;
    ep.set_delay(Duration::from_millis(300));
    ep.set_expires_in(2);
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &oauth2_config(&up, &private_key_jwt(&ep))).await;
    let client = TlsClient::new(&pki, gw.addr, Some("app"));
    // Twenty callers at once on a cold cache: one token request, one token for all.
    let calls = (0..20).map(|_| call(&client, "/pay/x", Some("Bearer the-callers-own")));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(ep.requests(), 1, "refused: {:?}", ep.refusals());
    assert_eq!(ep.issued(), 1);
    for seen in up.seen() {
        let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
        assert_eq!(
            auth,
            ["Bearer tok-1"],
            "the gateway's token, never the caller's"
        );
    }
    gw.assert_metric(
        "certgate_upstream_credential_fetches_total{credential=\"pay\",result=\"ok\"}",
        1.0,
    )
    .await;
    // A two-second token is replaced after one second (half its life), while the old one
    // still serves; every assertion carried a fresh jti (the endpoint refuses a replay).
    ep.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_for("the refreshed token", Duration::from_secs(10), || async {
        let r = call(&client, "/pay/x", None).await;
        assert_eq!(r.status, 200);
        match last_authorization(&up).as_slice() {
            [t] if t == "Bearer tok-2" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(ep.refusals().is_empty(), "{:?}", ep.refusals());
    // The route without a credential passes the caller's Authorization through untouched.
    call(&client, "/open", Some("Bearer the-callers-own")).await;
    assert_eq!(last_authorization(&up), ["Bearer the-callers-own"]);
    let logs = gw.logs();
    assert!(
        logs.contains("upstream credential: new access token"),
        "{logs}"
    );
    assert!(!logs.contains("tok-1") && !logs.contains("tok-2") && !logs.contains("eyJ"));
}

#[tokio::test]
async fn tls_client_auth_and_client_secret_basic_authenticate_the_gateway() {
    // tls_client_auth: the endpoint checks the certificate the gateway presents.
    let (pki, ep) = token_setup(|_| TokenClient {
        id: "certgate-gw".into(),
        assertion_key: None,
        secret: None,
        cert_cn: Some("certgate-gw".into()),
        scope: SCOPE.into(),
    })
    .await;
    let up = Upstream::start().await;
    let lines = format!(
        "token_url = \"{}\"\nclient_auth = \"tls_client_auth\"\ncert = \"certgate-gw.pem\"\nkey = \"certgate-gw-key.pem\"",
        ep.url()
    );
    let gw = Gateway::start(&pki, &oauth2_config(&up, &lines)).await;
    let client = TlsClient::new(&pki, gw.addr, Some("app"));
    let r = call(&client, "/pay", None).await;
    assert_eq!(r.status, 200, "{} {:?}", r.text(), ep.refusals());
    assert_eq!(last_authorization(&up), ["Bearer tok-1"]);
    drop(gw);

    // client_secret_basic: a wrong secret is refused by the endpoint → 503 for the caller;
    // the corrected secret file is picked up without a restart.
    let (pki, ep) = token_setup(|_| TokenClient {
        id: "certgate-gw".into(),
        assertion_key: None,
        secret: Some("right-s3cret".into()),
        cert_cn: None,
        scope: SCOPE.into(),
    })
    .await;
    pki.write("as-secret", "wrong-s3cret\n");
    let lines = format!(
        "token_url = \"{}\"\nclient_auth = \"client_secret_basic\"\nsecret_file = \"as-secret\"",
        ep.url()
    );
    let gw = Gateway::start(&pki, &oauth2_config(&up, &lines)).await;
    let client = TlsClient::new(&pki, gw.addr, Some("app"));
    let r = call(&client, "/pay", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "upstream_credential_unavailable");
    assert_eq!(ep.refusals(), ["basic credentials"]);
    gw.assert_metric(
        "certgate_upstream_credential_fetches_total{credential=\"pay\",result=\"rejected\"}",
        1.0,
    )
    .await;
    gw.wait_for_log("invalid_client").await;
    pki.write("as-secret", "right-s3cret\n");
    wait_for("the corrected secret", Duration::from_secs(10), || async {
        match call(&client, "/pay", None).await.status.as_u16() {
            200 => Ok(()),
            s => Err(s.to_string()),
        }
    })
    .await;
    assert_eq!(last_authorization(&up), ["Bearer tok-1"]);
    assert!(!gw.logs().contains("s3cret"), "secrets never logged");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_costs_only_its_own_route() {
    let (pki, ep) = token_setup(jwt_client).await;
    ep.fail_with(500);
    let up = Upstream::start().await;
    let config = oauth2_config(&up, &private_key_jwt(&ep));
    let gw = Gateway::start(&pki, &config).await;
    let client = TlsClient::new(&pki, gw.addr, Some("app"));
    let r = call(&client, "/pay", None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (503, "upstream_credential_unavailable")
    );
    assert_eq!(
        call(&client, "/open", None).await.status,
        200,
        "other routes unaffected"
    );
    // Right after a failure the endpoint is left alone for a second: no request storm.
    assert_eq!(call(&client, "/pay", None).await.status, 503);
    assert_eq!(ep.requests(), 1);
    gw.assert_metric(
        "certgate_upstream_credential_fetches_total{credential=\"pay\",result=\"error\"}",
        1.0,
    )
    .await;
    // The endpoint recovers: so does the route.
    ep.fail_with(0);
    wait_for("the route to recover", Duration::from_secs(10), || async {
        match call(&client, "/pay", None).await.status.as_u16() {
            200 => Ok(()),
            s => Err(s.to_string()),
        }
    })
    .await;
    // With a cached token, the endpoint going away changes nothing — nor does a reload that
    // leaves the credential as it was (the token is kept, not fetched again).
    ep.stop();
    let full = std::fs::read_to_string(pki.path("certgate.toml")).unwrap();
    pki.write("certgate.toml", &format!("# reloaded\n{full}"));
    wait_until("the reload", Duration::from_secs(10), || {
        gw.logs().contains("config reloaded")
    })
    .await;
    let r = call(&client, "/pay", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(last_authorization(&up), ["Bearer tok-1"]);
}

#[test]
fn check_validates_oauth2_credentials() {
    let pki = Pki::new();
    pki.client(&pki.root, "certgate-gw", LeafSpec::client("certgate-gw"));
    pki.write(
        "junk-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let up_url = "http://127.0.0.1:9";
    let run = |lines: &str| {
        let body = oauth2_config_at(up_url, lines);
        let c = write_check_config(&pki, &body);
        run_cli(&["check", "--config", c.to_str().unwrap()])
    };
    let good = "token_url = \"https://localhost:9/token\"\nclient_auth = \"private_key_jwt\"\nkey = \"certgate-gw-key.pem\"";
    let (code, out, err) = run(good);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("credential pay (OAuth2 token from https://localhost:9/token) in authorization of team-pay"),
        "{out}"
    );
    for (lines, expected) in [
        (
            good.replace("https://", "http://"),
            "upstream_credentials.pay.token_url: must be https://",
        ),
        (
            good.replace("key = \"certgate-gw-key.pem\"", ""),
            "upstream_credentials.pay.key: required with client_auth = \"private_key_jwt\"",
        ),
        (
            good.replace("certgate-gw-key.pem", "junk-key.pem"),
            "upstream_credentials.pay.key",
        ),
        (
            format!("{good}\nsecret_file = \"ca.pem\""),
            "upstream_credentials.pay.secret_file: does not apply to client_auth = \"private_key_jwt\"",
        ),
        (
            good.replace("private_key_jwt", "client_secret_post"),
            "client_secret_post",
        ),
        (
            good.replace("client_auth = \"private_key_jwt\"\n", ""),
            "upstream_credentials.pay.client_auth: required",
        ),
        (
            good.replace("certgate-gw-key.pem", "missing.pem"),
            "missing.pem",
        ),
    ] {
        let (code, out, err) = run(&lines);
        assert_eq!(code, 1, "{lines}: {out}");
        assert!(err.contains(expected), "{lines}: {err}");
    }
}

fn oauth2_config_at(u: &str, credential: &str) -> String {
    format!(
        "{}[upstreams.pay]\nurl = \"{u}\"\ncredential = \"pay\"\n[upstreams.open]\nurl = \"{u}\"\n\
         [upstream_credentials.pay]\nkind = \"oauth2_client_credentials\"\nclient_id = \"certgate-gw\"\n\
         ca = \"ca.pem\"\nscopes = [\"pay:write\", \"pay:read\"]\nowner = \"team-pay\"\n{credential}\n\
         [[routes]]\nname = \"pay\"\npath_prefix = \"/pay\"\nupstream = \"pay\"\nallow = [{{ cn = \"app\" }}]\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"open\"\nallow = [{{ cn = \"app\" }}]\n",
        client_auth("require", ""),
    )
}
