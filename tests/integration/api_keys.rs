//! Legacy API keys: `certgate keys new | import | list` and what `check` says of the keys file.

use std::io::Write;
use std::process::{Command, Stdio};

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
    let mut child = Command::new(BIN)
        .args([
            "keys",
            "import",
            "--config",
            config.to_str().unwrap(),
            "--owner",
            "team-legacy",
            "--sunset",
            "2099-06-30",
            "--routes",
            "invoices",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cr3t-legacy-key-from-2014\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
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
