//! Legacy API keys: `certgate keys new | import | list` and what `check` says of the keys file.

use std::io::Write;
use std::process::{Command, Stdio};

use std::time::Duration;

use certgate_testpki::LeafSpec;

use crate::common::*;

/// A config with `[api_keys]` (keys file and pepper beside it) and two routes.
fn keys_config(pki: &Pki) -> std::path::PathBuf {
    pki.write("pepper", "an HMAC pepper of at least thirty-two bytes");
    write_check_config(
        pki,
        &format!(
            "{}{}\
             [api_keys]\nfile = \"api-keys.toml\"\npepper_file = \"pepper\"\n\
             migration_link = \"https://docs.example.com/move-to-mtls\"\n\
             [[routes]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n\
             [[routes]]\nname = \"invoices\"\npath_prefix = \"/invoices\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
            client_auth("optional", ""),
            upstream_section("up", "http://127.0.0.1:9", ""),
        ),
    )
}

/// `certgate keys import` of `secret` (on stdin) for team-legacy on `routes`.
fn import_key(config: &std::path::Path, routes: &str, secret: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["keys", "import", "--config", config.to_str().unwrap()])
        .args([
            "--owner",
            "team-legacy",
            "--sunset",
            "2099-06-30",
            "--routes",
            routes,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(secret.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn keys(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["keys", args[0], "--config", config.to_str().unwrap()];
    all.extend(&args[1..]);
    run_cli(&all)
}

#[test]
fn keys_new_prints_the_key_once_and_stores_only_its_hash() {
    let pki = Pki::new();
    let config = keys_config(&pki);
    let (code, key, err) = keys(
        &config,
        &[
            "new",
            "--owner",
            "team-erp",
            "--sunset",
            "2099-03-31",
            "--routes",
            "orders",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let key = key.trim();
    assert!(key.starts_with("cgk_") && key.len() == 43, "{key}");
    assert!(err.contains("shown once"), "{err}");
    let file = std::fs::read_to_string(pki.path("api-keys.toml")).unwrap();
    assert!(!file.contains(key), "the key itself is never stored");
    assert!(file.contains("hash = \"hmac-sha256:"), "{file}");
    assert!(file.contains("owner = \"team-erp\""), "{file}");
    let id = &key[4..13];
    assert!(file.contains(&format!("id = \"{id}\"")), "{file}");

    // A second key appends; both are listed, without hashes.
    let (code, second, _) = keys(
        &config,
        &[
            "new",
            "--owner",
            "team-pay",
            "--sunset",
            "2099-01-01",
            "--routes",
            "orders,invoices",
            "--cutover",
            "reject-if-cert-seen",
        ],
    );
    assert_eq!(code, 0);
    assert_ne!(second.trim(), key);
    let (code, list, err) = keys(&config, &["list"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "team-erp",
        "team-pay",
        "2099-03-31",
        "orders,invoices",
        "reject_if_cert_seen",
        "active",
    ] {
        assert!(list.contains(want), "{want}: {list}");
    }
    assert!(!list.contains("hmac-sha256"), "{list}");

    // check loads the file as the gateway does.
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("api_keys   2 key(s)"), "{out}");
    // team-pay's key cuts over on a certificate of team-pay, but no owner has that name.
    assert!(
        format!("{out}{err}")
            .contains("cuts over when a certificate of team-pay is used, but no [[owner]]"),
        "{out}{err}"
    );
    assert!(
        !format!("{out}{err}").contains("of team-erp is used"),
        "team-erp's key does not cut over"
    );
}

#[test]
fn keys_new_refuses_what_the_gateway_would_refuse() {
    let pki = Pki::new();
    let config = keys_config(&pki);
    for (args, want) in [
        (
            vec![
                "--owner",
                "t",
                "--sunset",
                "2099-03-31",
                "--routes",
                "nowhere",
            ],
            "no route is named \"nowhere\"",
        ),
        (
            vec![
                "--owner",
                "t",
                "--sunset",
                "31/03/2099",
                "--routes",
                "orders",
            ],
            "is not a YYYY-MM-DD day",
        ),
        (
            vec![
                "--owner",
                " ",
                "--sunset",
                "2099-03-31",
                "--routes",
                "orders",
            ],
            "owner",
        ),
    ] {
        let mut all = vec!["new"];
        all.extend(args);
        let (code, out, err) = keys(&config, &all);
        assert_eq!(code, 1, "{out}");
        assert!(out.is_empty(), "no key printed for a refused record: {out}");
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!pki.path("api-keys.toml").exists(), "nothing written");
    // A pepper shorter than 32 bytes is refused.
    pki.write("pepper", "short");
    let (code, _, err) = keys(
        &config,
        &[
            "new",
            "--owner",
            "t",
            "--sunset",
            "2099-03-31",
            "--routes",
            "orders",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 32"), "{err}");
}

#[test]
fn keys_import_stores_a_legacy_key_as_argon2id() {
    let pki = Pki::new();
    let config = keys_config(&pki);
    let out = import_key(&config, "invoices", "s3cr3t-legacy-key-from-2014");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("imported as key legacy-"), "{err}");
    let file = std::fs::read_to_string(pki.path("api-keys.toml")).unwrap();
    assert!(file.contains("hash = \"argon2id:$argon2id$"), "{file}");
    assert!(!file.contains("s3cr3t"), "{file}");
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_refuses_a_plaintext_key_and_warns_about_sunset_keys() {
    let pki = Pki::new();
    let config = keys_config(&pki);
    let (_, key, _) = keys(
        &config,
        &[
            "new",
            "--owner",
            "team-erp",
            "--sunset",
            "2099-03-31",
            "--routes",
            "orders",
        ],
    );
    let key = key.trim().to_string();
    let stored = std::fs::read_to_string(pki.path("api-keys.toml")).unwrap();

    // Someone pastes the key itself where its hash goes: refused, naming the file, never echoed.
    let hash_line = stored.lines().find(|l| l.starts_with("hash = ")).unwrap();
    pki.write(
        "api-keys.toml",
        &stored.replace(hash_line, &format!("hash = \"{key}\"")),
    );
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("api-keys.toml: key[0].hash: holds a plaintext API key"),
        "{err}"
    );
    assert!(
        !err.contains(&key) && !out.contains(&key),
        "the key is never printed"
    );

    // Past its sunset: a warning naming the key, and check still passes.
    pki.write(
        "api-keys.toml",
        &stored.replace("sunset = \"2099-03-31\"", "sunset = \"2020-01-01\""),
    );
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("of team-erp is past its sunset (2020-01-01)"),
        "{out}{err}"
    );

    // The keys file missing, or no [api_keys] for `keys new`: errors that say what to do.
    std::fs::remove_file(pki.path("api-keys.toml")).unwrap();
    let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("api-keys.toml"), "{err}");
    let plain = write_check_config(
        &pki,
        &format!(
            "{}{}{}",
            client_auth("require", ""),
            upstream_section("up", "http://127.0.0.1:9", ""),
            route_all("")
        ),
    );
    let (code, _, err) = keys(&plain, &["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("no [api_keys] section"), "{err}");
}

/// The gateway in optional mode with `[api_keys]`, an owners file, and three routes: `orders`
/// and `invoices` accept keys, `admin` does not.
pub(crate) struct KeyGateway {
    pub(crate) pki: Pki,
    up: Upstream,
    pub(crate) gw: Gateway,
    /// The key of team-erp, for `orders` only.
    pub(crate) key: String,
    pub(crate) id: String,
}

const OWNERS: &str = "[[owner]]\nname = \"team-erp\"\nmatch = [ { cn = \"erp\" } ]\n";

fn key_routes(up: &Upstream, orders_extra: &str) -> String {
    format!(
        "{}{}[owners]\nfile = \"owners.toml\"\n\
         [api_keys]\nfile = \"api-keys.toml\"\npepper_file = \"pepper\"\n\
         migration_link = \"https://docs.example.com/move-to-mtls\"\n\
         [[routes]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"up\"\napi_keys = true\nallow = [{{ any = true }}]\n{orders_extra}\n\
         [[routes]]\nname = \"invoices\"\npath_prefix = \"/invoices\"\nupstream = \"up\"\napi_keys = true\nallow = [{{ any = true }}]\n\
         [[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("optional", ""),
        upstream_section("up", &up.url(), ""),
    )
}

impl KeyGateway {
    async fn start(cutover: &str) -> Self {
        Self::start_with(cutover, "").await
    }

    /// As [`KeyGateway::start`], with extra keys on the `orders` route.
    pub(crate) async fn start_with(cutover: &str, orders_extra: &str) -> Self {
        let pki = Pki::new();
        pki.client(&pki.root, "erp", LeafSpec::client("erp"));
        pki.write("owners.toml", OWNERS);
        pki.write("pepper", "an HMAC pepper of at least thirty-two bytes");
        let up = Upstream::start().await;
        let body = key_routes(&up, orders_extra);
        let config = write_check_config(&pki, &body);
        let mut args = vec![
            "keys",
            "new",
            "--config",
            config.to_str().unwrap(),
            "--owner",
            "team-erp",
            "--sunset",
            "2099-03-31",
            "--routes",
            "orders",
        ];
        if !cutover.is_empty() {
            args.extend(["--cutover", cutover]);
        }
        let (code, key, err) = run_cli(&args);
        assert_eq!(code, 0, "{err}");
        let key = key.trim().to_string();
        let id = key[4..13].to_string();
        let gw = Gateway::start(&pki, &body).await;
        Self {
            pki,
            up,
            gw,
            key,
            id,
        }
    }

    pub(crate) fn anonymous(&self) -> TlsClient {
        TlsClient::new(&self.pki, self.gw.addr, None)
    }

    pub(crate) async fn call(
        &self,
        client: &TlsClient,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        client.get_with(path, headers).await
    }
}

#[tokio::test]
async fn a_valid_key_is_forwarded_as_its_id_and_owner_with_deprecation_headers() {
    let s = KeyGateway::start("").await;
    let client = s.anonymous();
    let r = s.call(&client, "/orders/1", &[("x-api-key", &s.key)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-client-api-key-id"], s.id.as_str());
    assert_eq!(seen.headers["x-client-owner"], "team-erp");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "the key never goes upstream"
    );
    let deprecation = r.headers["deprecation"].to_str().unwrap();
    assert!(deprecation.starts_with('@'), "{deprecation}");
    assert_eq!(r.headers["sunset"], "Tue, 31 Mar 2099 00:00:00 GMT");
    assert_eq!(
        r.headers["link"],
        "<https://docs.example.com/move-to-mtls>; rel=\"deprecation\", <https://docs.example.com/move-to-mtls>; rel=\"sunset\""
    );
    // Authorization: ApiKey works too, and Authorization is not forwarded.
    let auth = format!("ApiKey {}", s.key);
    let r = s
        .call(&client, "/orders/2", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200);
    let seen = s.up.seen().pop().unwrap();
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["x-client-api-key-id"], s.id.as_str());
    // A client cannot claim a key id or owner itself.
    let r = s
        .call(
            &client,
            "/orders/3",
            &[
                ("x-api-key", &s.key),
                ("x-client-owner", "root"),
                ("x-client-api-key-id", "x"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = s.up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-client-owner"], "team-erp");
    assert_eq!(
        seen.headers.get_all("x-client-api-key-id").iter().count(),
        1
    );
    s.gw.wait_for_log(&format!("\"api_key_id\":\"{}\"", s.id))
        .await;
    assert!(
        !s.gw.logs().contains(&s.key),
        "the key never reaches the log"
    );
    s.gw.assert_metric("certgate_api_key_requests_total{result=\"ok\"}", 3.0)
        .await;
}

#[tokio::test]
async fn bad_keys_unlisted_routes_and_keys_in_the_query_are_refused() {
    let s = KeyGateway::start("").await;
    let client = s.anonymous();
    let other = {
        let mut k = s.key.clone().into_bytes();
        k[20] = if k[20] == b'a' { b'b' } else { b'a' };
        String::from_utf8(k).unwrap()
    };
    for (value, why) in [
        (other.as_str(), "malformed (check fails)"),
        ("cgk_nonsense", "malformed"),
        ("letmein", "not a key"),
    ] {
        let r = s.call(&client, "/orders/1", &[("x-api-key", value)]).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.error_code(), "invalid_api_key", "{why}");
        assert_eq!(r.headers["www-authenticate"], "ApiKey realm=\"certgate\"");
    }
    // A key the record does not list for the route.
    let r = s
        .call(&client, "/invoices/1", &[("x-api-key", &s.key)])
        .await;
    assert_eq!(r.status, 403);
    // A route without api_keys: a key is no credential there.
    let r = s.call(&client, "/admin", &[("x-api-key", &s.key)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthenticated");
    // In the query string: refused, and never logged.
    let r = s
        .call(&client, &format!("/orders/1?api_key={}", s.key), &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_request");
    let r = s
        .call(&client, &format!("/orders/1?q={}", s.key), &[])
        .await;
    assert_eq!(r.status, 400);
    assert!(
        s.up.seen().is_empty(),
        "nothing refused reached the upstream"
    );
    s.gw.wait_for_log("\"api_key_result\":\"malformed\"").await;
    assert!(!s.gw.logs().contains(&s.key));
    let results = |r: &str| format!("certgate_api_key_requests_total{{result=\"{r}\"}}");
    s.gw.assert_metric(&results("malformed"), 3.0).await;
    s.gw.assert_metric(&results("in_query"), 2.0).await;
    // The key itself was good on /invoices (refused there by its record's routes).
    s.gw.assert_metric(&results("ok"), 1.0).await;
    // Guessing keys from one address is a denial burst of that source (20 in the window).
    for i in 0..20 {
        let guess = format!("guess-{i}");
        let r = s.call(&client, "/orders/1", &[("x-api-key", &guess)]).await;
        assert_eq!(r.status, 401);
    }
    s.gw.assert_metric("certgate_anomalies_total{kind=\"denial_burst\"}", 1.0)
        .await;
}

#[tokio::test]
async fn a_certificate_beside_a_key_wins_and_the_key_is_dropped() {
    let s = KeyGateway::start("").await;
    let erp = TlsClient::new(&s.pki, s.gw.addr, Some("erp"));
    let r = s.call(&erp, "/orders/1", &[("x-api-key", &s.key)]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.get("deprecation").is_none(),
        "authenticated by the certificate"
    );
    let seen = s.up.seen().pop().unwrap();
    assert!(seen.headers.get("x-api-key").is_none());
    assert!(seen.headers.get("x-client-api-key-id").is_none());
    assert!(seen.headers.contains_key("x-forwarded-client-cert"));
    s.gw.wait_for_log("\"api_key_result\":\"dual_use\"").await;
}

#[tokio::test]
async fn revoked_and_sunset_keys_stop_at_the_next_request_after_the_file_changes() {
    let s = KeyGateway::start("").await;
    let client = s.anonymous();
    assert_eq!(
        s.call(&client, "/orders/1", &[("x-api-key", &s.key)])
            .await
            .status,
        200
    );
    let file = std::fs::read_to_string(s.pki.path("api-keys.toml")).unwrap();
    s.pki.write(
        "api-keys.toml",
        &file.replace("revoked = false", "revoked = true"),
    );
    wait_for(
        "the revocation to apply",
        Duration::from_secs(10),
        || async {
            let r = s.call(&client, "/orders/1", &[("x-api-key", &s.key)]).await;
            match (r.status.as_u16(), r.error_code()) {
                (401, code) if code == "invalid_api_key" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    s.pki
        .write("api-keys.toml", &file.replace("2099-03-31", "2020-01-01"));
    wait_for("the sunset to apply", Duration::from_secs(10), || async {
        let r = s.call(&client, "/orders/1", &[("x-api-key", &s.key)]).await;
        match (r.status.as_u16(), r.error_code()) {
            (401, code) if code == "api_key_sunset" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_key_set_to_cut_over_stops_once_its_owner_used_a_certificate() {
    let s = KeyGateway::start("reject-if-cert-seen").await;
    let client = s.anonymous();
    assert_eq!(
        s.call(&client, "/orders/1", &[("x-api-key", &s.key)])
            .await
            .status,
        200
    );
    // team-erp's certificate calls once.
    let erp = TlsClient::new(&s.pki, s.gw.addr, Some("erp"));
    assert_eq!(s.call(&erp, "/orders/1", &[]).await.status, 200);
    let r = s.call(&client, "/orders/1", &[("x-api-key", &s.key)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "api_key_cut_over");
}

#[tokio::test]
async fn an_imported_legacy_key_works_through_argon2() {
    let s = KeyGateway::start("").await;
    let config = s.gw_config();
    let out = import_key(&config, "orders", "old-shared-secret-2014");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = s.anonymous();
    wait_for(
        "the imported key to work",
        Duration::from_secs(10),
        || async {
            let r = s
                .call(
                    &client,
                    "/orders/1",
                    &[("x-api-key", "old-shared-secret-2014")],
                )
                .await;
            match r.status.as_u16() {
                200 => Ok(()),
                other => Err(other.to_string()),
            }
        },
    )
    .await;
    let seen = s.up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-client-owner"], "team-legacy");
    assert!(
        seen.headers["x-client-api-key-id"]
            .to_str()
            .unwrap()
            .starts_with("legacy-")
    );
    let r = s
        .call(
            &client,
            "/orders/1",
            &[("x-api-key", "old-shared-secret-2015")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(!s.gw.logs().contains("old-shared-secret"));
}

impl KeyGateway {
    pub(crate) fn gw_config(&self) -> std::path::PathBuf {
        self.pki.path("certgate.toml")
    }
}

#[tokio::test]
async fn rate_limits_count_a_key_by_its_id() {
    let s = KeyGateway::start_with(
        "",
        "rate_limit = { requests = 2, per = \"1h\", burst = 2, key = \"identity\" }",
    )
    .await;
    for _ in 0..2 {
        let r = s
            .call(&s.anonymous(), "/orders/1", &[("x-api-key", &s.key)])
            .await;
        assert_eq!(r.status, 200);
    }
    // From another address: still the key's budget (counted by key id, not by source IP).
    let elsewhere = s.anonymous().with_source("127.0.0.2");
    let r = s
        .call(&elsewhere, "/orders/1", &[("x-api-key", &s.key)])
        .await;
    assert_eq!(r.status, 429, "the key's budget is spent");
    // Another caller from the same address (a certificate) has a budget of its own.
    let erp = TlsClient::new(&s.pki, s.gw.addr, Some("erp"));
    assert_eq!(s.call(&erp, "/orders/1", &[]).await.status, 200);
}
