//! Revocation at scale (issue 16, first part): an unusable CRL is contained — the gateway starts,
//! every other CA keeps working, that CA's clients are refused as revocation-unknown, `check`
//! fails naming the file — and a reload that brings an unusable CRL keeps the last good one.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certgate_testpki::Ca;

use crate::common::*;

/// The same CRL with one bit of its signature flipped.
fn with_bad_signature(pem: &str) -> String {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = STANDARD.decode(b64).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        lines.join("\n")
    )
}

/// A CRL signed by `ca` that carries an unknown critical extension (made with openssl).
fn with_unknown_critical_extension(pki: &Pki, ca: &Ca, name: &str) -> String {
    let dir = pki.path(&format!("{name}-openssl"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.join("ca-key.pem"), ca.key_pem()).unwrap();
    openssl_gencrl(
        &dir,
        Some("1.3.6.1.4.1.55555.1 = critical,ASN1:NULL"),
        "out.crl",
    );
    std::fs::read_to_string(dir.join("out.crl")).unwrap()
}

/// A CA whose keyUsage lacks cRLSign (`name.pem`), a client of it (`name-client`) and a CRL it
/// signed anyway (`name.crl`), all made with openssl.
fn ca_without_crl_sign(pki: &Pki, name: &str) {
    let dir = pki.path(&format!("{name}-openssl"));
    std::fs::create_dir_all(&dir).unwrap();
    openssl_ec_key(&dir, "ca-key.pem");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-days",
            "7",
            "-subj",
            "/CN=No CRL Sign CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            "ca.pem",
        ],
    );
    openssl_issue_client(&dir, "/CN=d-client", "", None);
    openssl_gencrl(&dir, None, "ca.crl");
    for (from, to) in [
        ("ca.pem", format!("{name}.pem")),
        ("ca.crl", format!("{name}.crl")),
        ("c.pem", format!("{name}-client.pem")),
        ("key.pem", format!("{name}-client-key.pem")),
    ] {
        std::fs::copy(dir.join(from), pki.path(&to)).unwrap();
    }
}

fn config(up: &str, crls: &str) -> String {
    format!(
        r#"[reload]
watch = false

{}{}
[[routes]]
name = "api"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth(
            "require",
            &format!(
                "trust_store = [\"ca.pem\", \"b.pem\", \"c.pem\", \"d.pem\"]\ncrls = [{crls}]"
            )
        )
        .replace("trust_store = [\"ca.pem\"]\n", ""),
        upstream_section("up", up, ""),
    )
}

async fn served(pki: &Pki, gw: &Gateway, who: &str) -> bool {
    matches!(
        TlsClient::new(pki, gw.addr, Some(who)).get("/x").await,
        Ok(r) if r.status == 200
    )
}

#[tokio::test]
async fn unusable_crls_are_reported_and_only_their_ca_is_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let b = Ca::root("CA B").unwrap();
    let c = Ca::root("CA C").unwrap();
    let stranger = Ca::root("Stranger CA").unwrap();
    pki.write("b.pem", &b.cert_pem);
    ca_without_crl_sign(&pki, "d");
    pki.write("c.pem", &c.cert_pem);
    let revoked = pki.client(&pki.root, "a-revoked", workload("a-revoked"));
    pki.client(&pki.root, "a-ok", workload("a-ok"));
    pki.client(&b, "b-ok", workload("b-ok"));
    pki.client(&c, "c-ok", workload("c-ok"));
    let day = Duration::from_secs(86400);
    pki.write("a.crl", &pki.root.crl(&[revoked.serial()], day).unwrap());
    pki.write("b.crl", &with_bad_signature(&b.crl(&[], day).unwrap()));
    pki.write("c.crl", &with_unknown_critical_extension(&pki, &c, "c"));
    pki.write("stranger.crl", &stranger.crl(&[], day).unwrap());
    pki.write(
        "garbage.crl",
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    );
    let crls = r#""a.crl", "b.crl", "c.crl", "stranger.crl", "d.crl", "garbage.crl""#;
    let gw = Gateway::start(&pki, &config(&up.url(), crls)).await;

    assert!(served(&pki, &gw, "a-ok").await, "CA A keeps working");
    assert!(
        !served(&pki, &gw, "a-revoked").await,
        "its CRL still applies"
    );
    assert!(!served(&pki, &gw, "b-ok").await, "CA B: revocation unknown");
    assert!(!served(&pki, &gw, "c-ok").await, "CA C: revocation unknown");
    assert!(
        !served(&pki, &gw, "d-client").await,
        "CA D: revocation unknown"
    );
    let usable = |name: &str| {
        format!(
            "certgate_crl_usable{{source=\"{}\"}}",
            pki.path(name).display()
        )
    };
    gw.assert_metric(&usable("a.crl"), 1.0).await;
    // A CRL of a CA that is not configured is pending (clients may present that CA), not
    // unusable.
    gw.assert_metric(&usable("stranger.crl"), 1.0).await;
    for bad in ["b.crl", "c.crl", "d.crl", "garbage.crl"] {
        gw.assert_metric(&usable(bad), 0.0).await;
    }
    // Not Ready while a CRL input has nothing in force, naming each.
    let (status, body) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    for bad in ["b.crl", "c.crl", "d.crl", "garbage.crl"] {
        assert!(
            body.contains(&format!("{bad}: unusable CRL")),
            "{bad}: {body}"
        );
    }
    assert!(!body.contains("stranger.crl: unusable"), "{body}");
    let logs = gw.logs();
    assert!(
        logs.contains("b.crl: unusable CRL (bad signature"),
        "{logs}"
    );
    assert!(
        logs.contains(
            "c.crl: unusable CRL (rejected by the verifier: an unknown critical extension)"
        ),
        "{logs}"
    );
    assert!(
        logs.contains("stranger.crl: the CRL of CN=Stranger CA is pending"),
        "{logs}"
    );
    assert!(
        logs.contains("d.crl: unusable CRL (its issuer CN=No CRL Sign CA may not sign CRLs"),
        "{logs}"
    );
    assert!(
        logs.contains("garbage.crl: unusable CRL (not a CRL"),
        "{logs}"
    );

    // check fails, naming each file and why.
    let (code, _, err) = run_cli(&[
        "check",
        "--config",
        pki.path("certgate.toml").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    for needle in [
        "client_auth.crls[1]",
        "b.crl",
        "bad signature",
        "client_auth.crls[2]",
        "c.crl",
        "client_auth.crls[3]",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // In words: no library variant names, parser states or byte arrays.
    for raw in [
        "Unsupported",
        "Incomplete",
        "Size(",
        "Der(",
        "[48",
        "Error(",
    ] {
        assert!(!err.contains(raw), "{raw}: {err}");
    }
    assert!(!err.contains("config OK"), "{err}");
}

#[tokio::test]
async fn a_reload_with_an_unusable_crl_keeps_the_last_good_one() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let b = Ca::root("CA B").unwrap();
    let c = Ca::root("CA C").unwrap();
    pki.write("b.pem", &b.cert_pem);
    ca_without_crl_sign(&pki, "d");
    pki.write("c.pem", &c.cert_pem);
    let revoked = pki.client(&pki.root, "a-revoked", workload("a-revoked"));
    pki.client(&pki.root, "a-ok", workload("a-ok"));
    let day = Duration::from_secs(86400);
    let good = pki.root.crl(&[revoked.serial()], day).unwrap();
    pki.write("a.crl", &good);
    let gw = Gateway::start(&pki, &config(&up.url(), r#""a.crl""#)).await;
    assert!(served(&pki, &gw, "a-ok").await);
    assert!(!served(&pki, &gw, "a-revoked").await);

    // The CRL file is replaced by a tampered one: the reload goes through, reports it, and the
    // revocations in force stay in force.
    pki.write("a.crl", &with_bad_signature(&good));
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    gw.wait_for_log("the last good CRL loaded from it stays in force")
        .await;
    assert!(served(&pki, &gw, "a-ok").await, "still served");
    assert!(!served(&pki, &gw, "a-revoked").await, "still revoked");
    gw.assert_metric(
        &format!(
            "certgate_crl_usable{{source=\"{}\"}}",
            pki.path("a.crl").display()
        ),
        0.0,
    )
    .await;
    // A good CRL again: usable.
    pki.write("a.crl", &good);
    let (code, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{body}");
    gw.assert_metric(
        &format!(
            "certgate_crl_usable{{source=\"{}\"}}",
            pki.path("a.crl").display()
        ),
        1.0,
    )
    .await;
}

/// One CA (the test PKI's root) with the CRL file `crl`.
fn one_ca(up: &str, crl: &str) -> String {
    format!(
        "[reload]\nwatch = false\n\n{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", &format!("crls = [\"{crl}\"]")),
        upstream_section("up", up, ""),
    )
}

/// VmRSS of a process, in MB.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap()
        / 1024
}

#[tokio::test]
async fn a_million_entry_crl_is_held_compactly_and_looked_up_exactly() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let revoked = pki.client(&pki.root, "revoked", workload("revoked"));
    pki.client(&pki.root, "ok", workload("ok"));
    let day = Duration::from_secs(86400);
    // 16-byte serials, as CAs issue them; the client's serial sits among them.
    let mut serials: Vec<_> = certgate_testpki::synthetic_serials(999_999).collect();
    serials.insert(500_000, revoked.serial());
    pki.write(
        "small.crl",
        &pki.root.crl(&[revoked.serial()], day).unwrap(),
    );
    let small = Gateway::start(&pki, &one_ca(&up.url(), "small.crl")).await;
    let baseline = rss_mb(small.pid());
    drop(small);

    pki.write("a.crl", &pki.root.crl(&serials, day).unwrap());
    let gw = Gateway::start(&pki, &one_ca(&up.url(), "a.crl")).await;
    assert!(served(&pki, &gw, "ok").await);
    assert!(!served(&pki, &gw, "revoked").await);
    let extra = rss_mb(gw.pid()).saturating_sub(baseline);
    // 1M × 16 bytes of serials, plus allocator slack; the limit is 200 MB.
    assert!(
        extra < 100,
        "a 1M-entry CRL holds {extra} MB above a 1-entry one"
    );
    let (code, out, err) = run_cli(&[
        "check",
        "--config",
        pki.path("certgate.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 1000000"), "{out}");
}

/// One CA with its CRL from `url`, refreshed every second, cached in `cache`.
fn from_url(up: &str, url: &str, cache: &str) -> String {
    format!(
        "[reload]\nwatch = false\n\n{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth(
            "require",
            &format!("crl_urls = [\"{url}\"]\ncrl_refresh = \"1s\"\ncrl_cache_dir = \"{cache}\"")
        ),
        upstream_section("up", up, ""),
    )
}

fn fetches(url: &str, result: &str) -> String {
    format!("certgate_crl_fetches_total{{result=\"{result}\",source=\"{url}\"}}")
}

#[tokio::test]
async fn crls_from_urls_are_fetched_refreshed_kept_and_cached() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let day = Duration::from_secs(86400);
    let first = pki.client(&pki.root, "first", workload("first"));
    let victim = pki.client(&pki.root, "victim", workload("victim"));
    pki.client(&pki.root, "ok", workload("ok"));
    let crl1 = pki.root.crl(&[first.serial()], day).unwrap();
    let doc = DocServer::start(&crl1, None).await;
    let url = format!("http://{}/ca.crl", doc.addr);
    let gw = Gateway::start(&pki, &from_url(&up.url(), &url, "cache")).await;

    // Fetched before serving: its revocations apply from the first handshake.
    assert!(!served(&pki, &gw, "first").await);
    assert!(served(&pki, &gw, "ok").await);
    gw.assert_metric(&fetches(&url, "ok"), 1.0).await;
    gw.assert_metric(&format!("certgate_crl_usable{{source=\"{url}\"}}"), 1.0)
        .await;
    let cached = std::fs::read_dir(pki.path("cache")).unwrap().count();
    assert_eq!(cached, 1, "one cache file");
    // Refreshed with a conditional GET: unchanged → 304.
    let hits = doc.hits();
    doc.wait_hits(hits + 2).await;
    assert!(gw.metric(&fetches(&url, "not_modified")).await >= 1.0);

    // A new CRL revokes a client holding a kept-alive connection: its next request on that
    // connection is refused, and so is its next handshake.
    let client = TlsClient::new(&pki, gw.addr, Some("victim"));
    let mut held = client.h1().await.unwrap();
    let req = || {
        http::Request::get("/held")
            .header("host", "localhost")
            .body(TestBody::empty())
            .unwrap()
    };
    assert_eq!(held.send_request(req()).await.unwrap().status(), 200);
    doc.set(
        200,
        &pki.root
            .crl(&[first.serial(), victim.serial()], day)
            .unwrap(),
    );
    gw.assert_metric(&fetches(&url, "ok"), 2.0).await;
    // The fetch at start was the first reload for a fetched CRL; this is the second.
    wait_until(
        "a second reload for a fetched CRL",
        Duration::from_secs(5),
        || gw.logs().matches("\"trigger\":\"CRL fetched\"").count() >= 2,
    )
    .await;
    assert_eq!(
        gw.logs().matches("\"trigger\":\"CRL fetched\"").count(),
        2,
        "{}",
        gw.logs()
    );
    assert_eq!(held.send_request(req()).await.unwrap().status(), 403);
    assert!(!served(&pki, &gw, "victim").await);
    assert!(served(&pki, &gw, "ok").await);

    // The URL fails (500), then serves junk: the last good CRL stays in force.
    doc.set(500, "oops");
    let errors = gw.metric(&fetches(&url, "error")).await;
    doc.wait_hits(doc.hits() + 2).await;
    wait_for(
        "a failed fetch to be counted",
        Duration::from_secs(2),
        || async {
            match gw.metric(&fetches(&url, "error")).await {
                n if n > errors => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    doc.set(
        200,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    );
    doc.wait_hits(doc.hits() + 2).await;
    wait_for(
        "an invalid CRL to be counted",
        Duration::from_secs(2),
        || async {
            match gw.metric(&fetches(&url, "invalid")).await {
                n if n >= 1.0 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    assert!(!served(&pki, &gw, "victim").await, "still revoked");
    assert!(served(&pki, &gw, "ok").await);
    drop(gw);

    // Restart with the URL down: the cached copy is in force from the start.
    doc.stop();
    let gw = Gateway::start(&pki, &from_url(&up.url(), &url, "cache")).await;
    assert!(!served(&pki, &gw, "victim").await, "revoked from the cache");
    assert!(served(&pki, &gw, "ok").await);
    gw.assert_metric(&format!("certgate_crl_usable{{source=\"{url}\"}}"), 1.0)
        .await;
    assert!(gw.logs().contains("CRL fetch failed"), "{}", gw.logs());
    drop(gw);

    // Down and nothing cached: no CRL for that CA, so its clients are revocation-unknown
    // (refused under the default unknown_revocation = "deny"), and the log says why.
    let gw = Gateway::start(&pki, &from_url(&up.url(), &url, "empty-cache")).await;
    assert!(!served(&pki, &gw, "ok").await);
    gw.wait_for_log("no copy yet").await;
    gw.assert_metric(&format!("certgate_crl_usable{{source=\"{url}\"}}"), 0.0)
        .await;
    // check names the URL (a warning: check does not fetch).
    let (code, _, err) = run_cli(&[
        "check",
        "--config",
        pki.path("certgate.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("client_auth.crl_urls[0]") && err.contains("no copy yet"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_that_adds_a_crl_url_fetches_it_before_going_live() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let day = Duration::from_secs(86400);
    let revoked = pki.client(&pki.root, "revoked", workload("revoked"));
    pki.client(&pki.root, "ok", workload("ok"));
    let doc = DocServer::start(&pki.root.crl(&[revoked.serial()], day).unwrap(), None).await;
    let url = format!("http://{}/ca.crl", doc.addr);
    let gw = Gateway::start(
        &pki,
        &one_ca(&up.url(), "none.crl").replace("crls = [\"none.crl\"]", ""),
    )
    .await;
    assert!(
        served(&pki, &gw, "revoked").await,
        "no revocation checking yet"
    );
    // The new config names the URL: when /reload answers, its CRL is in force.
    let body = from_url(&up.url(), &url, "cache");
    let config = std::fs::read_to_string(pki.path("certgate.toml")).unwrap();
    let head = &config[..config.find("[reload]").unwrap()];
    pki.write("certgate.toml", &format!("{head}{body}"));
    let (code, reply) = admin_post(gw.admin, "/reload").await;
    assert_eq!(code, 200, "{reply}");
    assert!(!served(&pki, &gw, "revoked").await);
    assert!(served(&pki, &gw, "ok").await);
    assert!(!gw.logs().contains("no copy yet"), "{}", gw.logs());
}

#[tokio::test]
async fn a_crl_document_over_crl_max_bytes_is_refused_while_it_streams() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let day = Duration::from_secs(86400);
    let revoked = pki.client(&pki.root, "revoked", workload("revoked"));
    let good = pki.root.crl(&[revoked.serial()], day).unwrap();
    let doc = DocServer::start(&good, None).await;
    let url = format!("http://{}/ca.crl", doc.addr);
    let gw = Gateway::start(
        &pki,
        &from_url(&up.url(), &url, "cache").replace(
            "crl_refresh = \"1s\"",
            "crl_refresh = \"1s\"\ncrl_max_bytes = \"64KiB\"",
        ),
    )
    .await;
    gw.assert_metric(&fetches(&url, "ok"), 1.0).await;
    assert!(!served(&pki, &gw, "revoked").await);

    // A declared length over the cap: refused before the body is read.
    doc.set(200, &"x".repeat(100 * 1024));
    let hits = doc.hits();
    doc.wait_hits(hits + 1).await;
    gw.assert_metric(&fetches(&url, "too_large"), 1.0).await;
    // No declared length, far more than the cap (about 64 MiB of chunks): cut off at the cap,
    // without holding it.
    doc.set_unsized(4096);
    let hits = doc.hits();
    doc.wait_hits(hits + 1).await;
    gw.assert_metric(&fetches(&url, "too_large"), 2.0).await;
    assert!(
        gw.peak_rss_kib() < 100 * 1024,
        "the body was never buffered: peak RSS {} KiB",
        gw.peak_rss_kib()
    );
    // The last good CRL stays in force and in the cache; nothing half-written is left.
    assert!(!served(&pki, &gw, "revoked").await);
    let names: Vec<String> = std::fs::read_dir(pki.path("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".crl"), "{names:?}");
}
