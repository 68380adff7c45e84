//! The foundation: live upstream state that survives reloads, a reload watcher that sleeps
//! while nothing changes, relative config paths, and `check` refusing what cannot work.

use std::time::Duration;

use certgate_testpki::{Ca, LeafSpec};

use crate::common::*;

fn pool_config(endpoints: &[String], upstream_extra: &str, extra_route: bool) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let extra = if extra_route {
        "[[routes]]\nname = \"extra\"\npath_prefix = \"/extra\"\nupstream = \"pool\"\nallow = [{ any = true }]\n\n"
    } else {
        ""
    };
    format!(
        "{}[upstreams.pool]\nendpoints = [{list}]\n{upstream_extra}\n\n{extra}[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"pool\"\nallow = [{{ any = true }}]\n",
        client_auth("require", "")
    )
}

/// Rewrites the config the gateway runs on (same listener and admin addresses) and reloads.
async fn rewrite_and_reload(pki: &Pki, gw: &Gateway, body: &str) {
    let config = format!(
        "[listener]\nbind = \"{}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\n[admin]\nbind = \"{}\"\n\n[reload]\nwatch = false\n\n{body}",
        gw.addr, gw.admin
    );
    pki.write("certgate.toml", &config);
    let (status, out) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn ejections_and_pooled_connections_survive_unrelated_reloads() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let urls = [a.url(), b.url()];
    let upstream_extra = "eject_after = 1\nejection_time = \"60s\"\nretries = 1";
    let gw = Gateway::start(&pki, &pool_config(&urls, upstream_extra, false)).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));

    // `a` goes down and is ejected; it comes back on the same port while still ejected.
    a.stop();
    for i in 0..4 {
        assert_eq!(client.get(&format!("/x/{i}")).await.unwrap().status, 200);
    }
    gw.assert_metric(r#"certgate_upstream_ejections_total{upstream="pool"}"#, 1.0)
        .await;
    let revived = Upstream::start_with(UpstreamOptions {
        addr: Some(a.addr),
        ..Default::default()
    })
    .await;
    let b_connections = b.accepted();

    // A reload that changes nothing about the pool (one more route) keeps its state.
    rewrite_and_reload(&pki, &gw, &pool_config(&urls, upstream_extra, true)).await;
    let mut send = client.h1().await.unwrap();
    for i in 0..6 {
        let r = send
            .send_request(
                http::Request::get(format!("/extra/{i}"))
                    .header("host", "localhost")
                    .body(TestBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(read_reply(r).await.unwrap().status, 200);
    }
    assert_eq!(
        revived.seen().len(),
        0,
        "the ejected endpoint stays ejected across the reload"
    );
    assert_eq!(b.seen().len(), 4 + 6);
    assert_eq!(
        b.accepted(),
        b_connections,
        "requests after the reload reuse the pooled upstream connection"
    );

    // Changing the pool's endpoints does rebuild it: the revived endpoint, alone now, serves.
    rewrite_and_reload(&pki, &gw, &pool_config(&[a.url()], upstream_extra, true)).await;
    assert_eq!(client.get("/after").await.unwrap().status, 200);
    assert_eq!(revived.seen().len(), 1);
}

/// Bytes the process has read (files, sockets, eventfds) so far.
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar")
}

#[tokio::test]
async fn the_gateway_does_not_reread_its_inputs_while_they_do_not_change() {
    let pki = Pki::new();
    // A trust store with a large preamble (PEM allows text around the blocks): every re-read
    // of the inputs costs 256 KiB and shows in the process's read count.
    pki.write(
        "ca.pem",
        &format!("{}\n{}", "#".repeat(256 << 10), pki.root.cert_pem),
    );
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(
        &pki,
        &format!(
            "{}{}[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
            client_auth("require", ""),
            upstream_section("up", &up.url(), "")
        ),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Idle, then serving: the access log goes to a file beside the config (as the test
    // harness writes it), so every request changes that directory — but no input.
    let before = bytes_read(gw.pid());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..6 {
        assert_eq!(client.get(&format!("/r/{i}")).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let read = bytes_read(gw.pid()) - before;
    assert!(
        read < 128 << 10,
        "the gateway read {read} bytes in 3 s: it is re-reading its inputs"
    );
    assert!(
        !gw.logs()
            .contains("checking the config's inputs for changes"),
        "no change, no check"
    );

    // A real change is still seen at once (poll_interval is 10 s: this is the watcher).
    let reloads = r#"certgate_config_reloads_total{result="ok"}"#;
    let config = std::fs::read_to_string(pki.path("certgate.toml")).unwrap();
    pki.write(
        "certgate.toml",
        &config.replace("name = \"all\"", "name = \"everything\""),
    );
    gw.assert_metric(reloads, 1.0).await;
}

#[tokio::test]
async fn a_relative_config_path_still_reloads_on_change() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let (addr, admin) = (free_addr(), free_addr());
    let body = |name: &str| {
        format!(
            "[listener]\nbind = \"{addr}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\n[admin]\nbind = \"{admin}\"\n\n\
             [reload]\npoll_interval = \"300ms\"\n\n{}{}[[routes]]\nname = \"{name}\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
            client_auth("require", ""),
            upstream_section("up", &up.url(), "")
        )
    };
    pki.write("certgate.toml", &body("first"));
    let dir = pki.dir.path();
    let gw = Gateway::launch_in(
        dir.parent().unwrap(),
        &std::path::Path::new(dir.file_name().unwrap()).join("certgate.toml"),
        addr,
        admin,
    )
    .await;
    pki.write("certgate.toml", &body("second"));
    gw.assert_metric(r#"certgate_config_reloads_total{result="ok"}"#, 1.0)
        .await;
}

fn check_with(pki: &Pki, config: &str) -> (i32, String, String) {
    let path = pki.write("check.toml", config);
    run_cli(&["check", "--config", path.to_str().unwrap()])
}

fn minimal(extra_client_auth: &str) -> String {
    format!(
        "[listener]\nbind = \"127.0.0.1:8443\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\n{}",
        client_auth("require", extra_client_auth)
    )
}

#[test]
fn check_refuses_an_expired_server_certificate_and_warns_of_a_crl_from_an_unknown_ca() {
    let pki = Pki::new();
    let expired = pki
        .root
        .issue(&LeafSpec {
            not_before_secs: -7200,
            not_after_secs: -3600,
            ..LeafSpec::localhost_server()
        })
        .unwrap();
    pki.write("expired.pem", &expired.cert_pem);
    pki.write("expired-key.pem", &expired.key_pem);
    let (code, _, err) = check_with(
        &pki,
        &minimal("")
            .replace("server.pem", "expired.pem")
            .replace("server-key.pem", "expired-key.pem"),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("listener.cert") && err.contains("expired.pem") && err.contains("expired at"),
        "{err}"
    );

    let stranger = Ca::root("Stranger CA").unwrap();
    pki.write(
        "stranger.crl",
        &stranger.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    // Not an error: the CRL of a CA clients may present (pending); check says how to verify it
    // at load instead.
    let (code, out, err) = check_with(&pki, &minimal("crls = [\"stranger.crl\"]"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: client_auth.crls[0]")
            && err.contains("stranger.crl")
            && err.contains("CN=Stranger CA is pending")
            && err.contains("add that CA certificate to client_auth.intermediates"),
        "{err}"
    );
    assert!(out.contains("config OK"), "{out}");
}

#[test]
fn check_speaks_config_words_and_says_how_to_write_a_duration() {
    let pki = Pki::new();
    let config = format!(
        "{}[upstreams.up]\nurl = \"http://127.0.0.1:9\"\nlb = \"least_requests\"\ntimeout = \"1m 30s\"\n",
        minimal("")
    );
    let (code, out, err) = check_with(&pki, &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(http1, least_requests, timeout 1m 30s)"),
        "{out}"
    );
    for rust_name in ["Some(", "None", "Http1", "LeastRequests", "::"] {
        assert!(!out.contains(rust_name), "{rust_name} in:\n{out}");
    }
    let (code, _, err) = check_with(&pki, &config.replace("\"1m 30s\"", "\"90\""));
    assert_ne!(code, 0);
    assert!(
        err.contains("upstreams") || err.contains("timeout"),
        "{err}"
    );
    assert!(
        err.contains("\"30s\""),
        "the error shows how to write one: {err}"
    );
}

fn one_route_config(up: &Upstream) -> String {
    format!(
        "{}{}[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    )
}

#[tokio::test]
async fn every_refused_handshake_gets_a_tls_alert() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &one_route_config(&up)).await;
    // openssl s_client as the reader, TLS 1.2, with `extra` options; stdout + stderr.
    let s_client = |extra: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-tls1_2"])
            .args(extra)
            .arg("-connect")
            .arg(gw.addr.to_string())
            .arg("-cert")
            .arg(pki.path("reader.pem"))
            .arg("-key")
            .arg(pki.path("reader-key.pem"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    // A TLS 1.2 client whose only signature algorithm the server's P-256 key cannot make.
    let said = s_client(&["-sigalgs", "ECDSA+SHA384"]);
    assert!(
        said.contains("alert"),
        "the client is told why (a TLS alert), not dropped:\n{said}"
    );
    // The same client with a usable algorithm is served.
    let said = s_client(&[]);
    assert!(
        said.contains("Protocol  : TLSv1.2") || said.contains("Protocol: TLSv1.2"),
        "{said}"
    );
}

fn events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn refused_handshakes_do_not_flood_the_log() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    // A self-signed client whose subject is 23 KB.
    let noisy_ca = Ca::root("Noisy CA").unwrap();
    pki.client(
        &noisy_ca,
        "noisy",
        LeafSpec {
            ou: Some("x".repeat(23_000)),
            ..LeafSpec::client("noisy")
        },
    );
    let gw = Gateway::start(&pki, &one_route_config(&up)).await;
    assert!(
        TlsClient::new(&pki, gw.addr, Some("noisy"))
            .get("/")
            .await
            .is_err()
    );
    // A scanner: 20 connections without a certificate.
    for _ in 0..20 {
        assert!(TlsClient::new(&pki, gw.addr, None).get("/").await.is_err());
    }
    gw.assert_metric(
        r#"certgate_tls_handshakes_total{result="no_certificate"}"#,
        20.0,
    )
    .await;
    let refused = |level: &str| {
        events(&gw)
            .iter()
            .filter(|e| e["target"] == "certgate::tls" && e["level"] == level)
            .count()
    };
    // The log is written by a background thread: wait for the 21 lines to land.
    wait_until(
        "21 refusals logged at debug",
        Duration::from_secs(5),
        || refused("DEBUG") >= 21,
    )
    .await;
    assert_eq!(refused("WARN"), 1, "one WARN line, the first refusal");
    assert!(refused("DEBUG") >= 21, "each refusal in full at debug");
    let longest = gw.logs().lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 4096,
        "client-controlled strings are bounded in the log: a {longest}-byte line"
    );
}

/// The commands of `certs/README.md`'s test PKI section, up to (not including) the revocation.
fn certs_readme_commands() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/README.md"))
        .expect("certs/README.md");
    let section = readme
        .split("## A test PKI with openssl")
        .nth(1)
        .expect("the test PKI section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its sh block");
    block
        .split("# Later:")
        .next()
        .expect("commands")
        .to_string()
}

#[tokio::test]
async fn the_reference_config_runs_after_the_certs_readme() {
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs");
    let config_dir = root.path().join("config");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&config_dir).unwrap();
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &certs_readme_commands()])
        .current_dir(&certs)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "certs/README.md's commands fail:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/certgate.toml"))
            .unwrap();
    let config = config_dir.join("certgate.toml");
    std::fs::write(&config, &reference).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "check on the reference config:\n{out}\n{err}");

    // Served as is (only the ports moved to free loopback ones): the README's curl reaches the
    // payments route — 502 because no API listens on 127.0.0.1:9000 here, but not a 404.
    let (addr, admin) = (free_addr(), free_addr());
    std::fs::write(
        &config,
        reference
            .replace("bind = \"0.0.0.0:8443\"", &format!("bind = \"{addr}\""))
            .replace("bind = \"127.0.0.1:9901\"", &format!("bind = \"{admin}\"")),
    )
    .unwrap();
    let _gw = Gateway::launch(&config, addr, admin).await;
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "--cacert",
            "client-ca.pem",
            "--cert",
            "reader.pem",
            "--key",
            "reader-key.pem",
        ])
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .arg(format!("https://localhost:{}/payments/1", addr.port()))
        .current_dir(&certs)
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "502",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn protocol_errors_after_the_handshake_are_logged_at_debug_with_their_cause() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &one_route_config(&up)).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let answer = raw_exchange(
        &client,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    gw.wait_for_log("connection ended with error").await;
    let line = events(&gw)
        .into_iter()
        .find(|e| e["message"] == "connection ended with error")
        .unwrap();
    assert_eq!(line["level"], "DEBUG");
    assert!(
        line["error"].as_str().unwrap_or("").contains("invalid"),
        "the cause is named: {line}"
    );
    assert!(up.seen().is_empty());
}

/// The first `sh` block of README.md's "Certificate-bound tokens" section.
fn readme_token_commands() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    readme
        .split("## Certificate-bound tokens")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("the token section's sh block")
        .to_string()
}

/// The reference config with what README's token example says to uncomment: the
/// `[token_issuers.corp]` block (all but `jwks_ca`) and the route's `token = …` line.
fn reference_with_tokens(reference: &str) -> String {
    let mut out = String::new();
    let mut in_issuer = false;
    for line in reference.lines() {
        if line.starts_with("# [token_issuers.corp]") {
            in_issuer = true;
        } else if line.trim().is_empty() {
            in_issuer = false;
        }
        let uncommented =
            if (in_issuer && !line.starts_with("# #") && !line.starts_with("# jwks_ca"))
                || line.starts_with("# token = {")
            {
                line.strip_prefix("# ").unwrap_or(line)
            } else {
                line
            };
        out.push_str(uncommented);
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn the_readme_token_example_mints_a_token_the_reference_config_accepts() {
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs");
    let config_dir = root.path().join("config");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&config_dir).unwrap();
    let script = format!(
        "{}\n{}\nprintf '%s' \"$TOKEN\" > token.jwt\n",
        certs_readme_commands(),
        readme_token_commands()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&certs)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "README's token commands fail:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/certgate.toml"))
            .unwrap();
    let with_tokens = reference_with_tokens(&reference);
    assert!(
        with_tokens.contains("\n[token_issuers.corp]\n") && with_tokens.contains("\ntoken = {")
    );
    let (addr, admin) = (free_addr(), free_addr());
    let config = config_dir.join("certgate.toml");
    std::fs::write(
        &config,
        with_tokens
            .replace("bind = \"0.0.0.0:8443\"", &format!("bind = \"{addr}\""))
            .replace("bind = \"127.0.0.1:9901\"", &format!("bind = \"{admin}\"")),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_cli(&["check", "--config", cfg]);
    assert_eq!(code, 0, "check:\n{out}\n{err}");
    assert!(out.contains("token from corp with payments:read"), "{out}");
    let token_file = format!("@{}", certs.join("token.jwt").display());
    let reader = certs.join("reader.pem");
    let (code, out, err) = run_cli(&[
        "explain",
        "--config",
        cfg,
        "--cert",
        reader.to_str().unwrap(),
        "--path",
        "/payments/1",
        "--token",
        &token_file,
    ]);
    assert_eq!(code, 0, "explain:\n{out}\n{err}");
    assert!(out.contains("token accepted"), "{out}");

    // The README's curl: the token passes (502: no API listens on 127.0.0.1:9000 here);
    // without it, 401.
    let _gw = Gateway::launch(&config, addr, admin).await;
    let token = std::fs::read_to_string(certs.join("token.jwt")).unwrap();
    let curl = |auth: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args([
                "--cacert",
                "client-ca.pem",
                "--cert",
                "reader.pem",
                "--key",
                "reader-key.pem",
            ])
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", addr.port()));
        if let Some(a) = auth {
            c.args(["-H", a]);
        }
        let out = c
            .arg(format!("https://localhost:{}/payments/1", addr.port()))
            .current_dir(&certs)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(Some(&format!("Authorization: Bearer {token}"))), "502");
    assert_eq!(curl(None), "401");
}

/// The `docker run` line the Dockerfile and README give, as (host dir, container dir) mounts and
/// the `--config` path.
fn docker_run_example(text: &str) -> (Vec<(String, String)>, String) {
    let start = text.find("docker run").expect("a docker run example");
    let command: String = text[start..]
        .lines()
        .map(|l| l.trim_start_matches('#').trim().trim_end_matches('\\'))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = command.split_whitespace().collect();
    let mounts = words
        .windows(2)
        .filter(|w| w[0] == "-v")
        .map(|w| {
            let spec = w[1].trim_matches('"');
            let mut parts = spec.split(':');
            let host = parts
                .next()
                .unwrap()
                .trim_start_matches("$PWD/")
                .to_string();
            (host, parts.next().expect("container path").to_string())
        })
        .collect();
    let config = words
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].to_string())
        .expect("--config");
    (mounts, config)
}

#[test]
fn the_docker_run_example_mounts_every_file_the_reference_config_reads() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let (mounts, config) = docker_run_example(&dockerfile);
    assert_eq!(
        (mounts.clone(), config.clone()),
        docker_run_example(&readme),
        "README and Dockerfile give the same command"
    );
    // The config file itself comes from a mount of the repository's config/.
    let in_container = |host: &str| {
        mounts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, c)| std::path::PathBuf::from(c))
            .unwrap_or_else(|| panic!("{host}/ is not mounted: {mounts:?}"))
    };
    let config = std::path::PathBuf::from(config);
    assert_eq!(config.parent().unwrap(), in_container("config"));
    let reference = std::fs::read_to_string(format!("{root}/config/certgate.toml")).unwrap();
    let file = certgate::config::ConfigFile::parse(&config, &reference).unwrap();
    let raw = &file.raw;
    // Every file it names resolves inside a mounted directory.
    let mut read = vec![raw.listener.cert.clone(), raw.listener.key.clone()];
    read.extend(raw.client_auth.trust_store.iter().cloned());
    read.extend(raw.client_auth.crls.iter().cloned());
    read.extend(raw.upstreams.values().filter_map(|u| u.ca.clone()));
    assert!(read.len() >= 5, "{read:?}");
    for p in read {
        let resolved = file.resolve(&p);
        let normal: std::path::PathBuf =
            resolved
                .components()
                .fold(std::path::PathBuf::new(), |mut acc, c| {
                    match c {
                        std::path::Component::ParentDir => {
                            acc.pop();
                        }
                        other => acc.push(other),
                    }
                    acc
                });
        assert!(
            mounts.iter().any(|(_, c)| normal.starts_with(c)),
            "{} ({}) is in no mounted directory: {mounts:?}",
            p.display(),
            normal.display()
        );
    }
}
