//! Rotation, revocation and reload without downtime; graceful shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certgate_testpki::{Ca, Issued, LeafSpec};
use rustls::pki_types::CertificateDer;

use crate::common::*;

/// A directory updated the way Kubernetes updates a mounted Secret or ConfigMap: files are
/// symlinks into `..data`, itself a symlink to a timestamped directory that is swapped atomically.
struct Projected {
    dir: PathBuf,
    version: u32,
}

impl Projected {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir, version: 0 }
    }

    fn publish(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let name = format!("..2026_11_23_v{}", self.version);
        let versioned = self.dir.join(&name);
        std::fs::create_dir(&versioned).unwrap();
        for (f, content) in files {
            std::fs::write(versioned.join(f), content).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (f, _) in files {
            let link = self.dir.join(f);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(f), &link).unwrap();
            }
        }
        if self.version > 1 {
            let _ = std::fs::remove_dir_all(
                self.dir.join(format!("..2026_11_23_v{}", self.version - 1)),
            );
        }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
}

fn routes(extra_route: bool) -> String {
    let mut r = format!(
        "[[routes]]\nname = \"load\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ uri = \"{}\" }}, {{ uri = \"{}\" }}, {{ cn = \"from-new-ca\" }}]\n",
        spiffe("reader"),
        spiffe("victim")
    );
    if extra_route {
        // Earlier in file order than the catch-all, so it takes /new.
        r = format!(
            "[[routes]]\nname = \"new\"\npath_prefix = \"/new\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n\n{r}"
        );
    }
    r
}

struct Setup {
    pki: Pki,
    tls: Projected,
    cfg: Projected,
    up: Upstream,
    gw: Gateway,
    config: Box<dyn Fn(bool) -> String + Send + Sync>,
}

async fn setup(crl_revokes: &[&Issued]) -> Setup {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "victim", workload("victim"));
    let up = Upstream::start().await;
    let mut tls = Projected::new(pki.path("tls"));
    let crl = pki
        .root
        .crl(
            &crl_revokes.iter().map(|c| c.serial()).collect::<Vec<_>>(),
            Duration::from_secs(86400),
        )
        .unwrap();
    tls.publish(&[
        ("tls.crt", &pki.server.cert_pem),
        ("tls.key", &pki.server.key_pem),
        ("ca.crt", &pki.root.cert_pem),
        ("ca.crl", &crl),
    ]);
    let (addr, admin, upstream) = (free_addr(), free_addr(), up.url());
    let config = move |extra_route: bool| {
        format!(
            "[listener]\nbind = \"{addr}\"\ncert = \"../tls/tls.crt\"\nkey = \"../tls/tls.key\"\n\n\
             [admin]\nbind = \"{admin}\"\n\n[reload]\npoll_interval = \"300ms\"\n\n\
             [client_auth]\nmode = \"require\"\ntrust_store = [\"../tls/ca.crt\"]\ncrls = [\"../tls/ca.crl\"]\n\n\
             [upstreams.up]\nurl = \"{upstream}\"\n\n{}",
            routes(extra_route)
        )
    };
    let mut cfg = Projected::new(pki.path("cfg"));
    cfg.publish(&[("certgate.toml", &config(false))]);
    let gw = Gateway::launch(&cfg.path("certgate.toml"), addr, admin).await;
    Setup {
        pki,
        tls,
        cfg,
        up,
        gw,
        config: Box::new(config),
    }
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!(
        "certgate_config_reloads_total{{result=\"{result}\"}}"
    ))
    .await
}

async fn wait_reloads(gw: &Gateway, result: &str, n: f64) {
    let what = format!("{result} reload #{n}");
    wait_for(&what, Duration::from_secs(10), || async {
        match reloads(gw, result).await {
            seen if seen >= n => Ok(()),
            seen => Err(format!("{seen} reloads; log:\n{}", gw.logs())),
        }
    })
    .await
}

/// The server certificate a fresh handshake presents.
async fn presented_server_cert(client: &TlsClient) -> Vec<u8> {
    let tls = client.tls(&Proto::H1).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// Requests the load must have served (through every rotation) for the test to mean something.
const MIN_LOAD: usize = 500;

/// Bounded loopback load: keep-alive and new-connection clients, counting every failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &TlsClient) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for worker in 0..3 {
            let (client, stop, ok, failures) =
                (client.clone(), stop.clone(), ok.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = None;
                // At most 4000 requests per worker, and only until stopped.
                for i in 0..4000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = if worker == 0 {
                        // A new connection (full handshake) per request.
                        client.get(&format!("/load/{i}")).await.map(|r| r.status)
                    } else {
                        if conn.is_none() {
                            conn = client.h1().await.ok();
                        }
                        match conn.as_mut() {
                            None => Err("connect failed".to_string()),
                            Some(c) => {
                                let req = http::Request::get(format!("/load/{i}"))
                                    .header("host", "localhost")
                                    .body(TestBody::empty())
                                    .unwrap();
                                match c.send_request(req).await {
                                    Ok(r) => read_reply(r).await.map(|r| r.status),
                                    Err(e) => Err(e.to_string()),
                                }
                            }
                        }
                    };
                    match result {
                        Ok(s) if s == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures
                            .lock()
                            .unwrap()
                            .push(format!("worker {worker} #{i}: {other:?}")),
                    }
                }
            }));
        }
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Stops the load once it served at least `MIN_LOAD` requests (waiting at most 20 s for
    /// that on a busy machine), and returns what it counted.
    async fn finish(self) -> (usize, Vec<String>) {
        wait_until(
            "the load to serve MIN_LOAD requests",
            Duration::from_secs(20),
            || self.ok.load(Ordering::Relaxed) >= MIN_LOAD,
        )
        .await;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_under_load_lose_no_requests_and_apply_at_once() {
    let mut s = setup(&[]).await;
    let client = TlsClient::new(&s.pki, s.gw.addr, Some("reader"));
    let load = Load::start(&client);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Rotate the server certificate (same CA, new key and serial).
    let rotated = s.pki.root.issue(&LeafSpec::localhost_server()).unwrap();
    s.tls.publish(&[
        ("tls.crt", &rotated.cert_pem),
        ("tls.key", &rotated.key_pem),
        ("ca.crt", &s.pki.root.cert_pem),
        (
            "ca.crl",
            &s.pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
        ),
    ]);
    wait_reloads(&s.gw, "ok", 1.0).await;
    assert_eq!(
        presented_server_cert(&client).await,
        rotated.der,
        "next handshake shows the new certificate"
    );

    // 2. Replace the trust store: add a second CA; its clients get in on the next handshake.
    let new_ca = Ca::root("New Client CA").unwrap();
    s.pki
        .client(&new_ca, "newcomer", LeafSpec::client("from-new-ca"));
    let newcomer = TlsClient::new(&s.pki, s.gw.addr, Some("newcomer"));
    assert!(newcomer.get("/x").await.is_err(), "not trusted yet");
    let bundle = format!("{}{}", s.pki.root.cert_pem, new_ca.cert_pem);
    s.pki.write(
        "new-ca.crl",
        &new_ca.crl(&[], Duration::from_secs(86400)).unwrap(),
    );
    let crls = format!(
        "{}{}",
        s.pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
        new_ca.crl(&[], Duration::from_secs(86400)).unwrap()
    );
    s.tls.publish(&[
        ("tls.crt", &rotated.cert_pem),
        ("tls.key", &rotated.key_pem),
        ("ca.crt", &bundle),
        ("ca.crl", &crls),
    ]);
    wait_reloads(&s.gw, "ok", 2.0).await;
    assert_eq!(newcomer.get("/x").await.expect("trusted now").status, 200);

    // 3. Republish the CRL revoking a client that holds a keep-alive connection.
    let victim = TlsClient::new(&s.pki, s.gw.addr, Some("victim"));
    let mut held = victim.h1().await.unwrap();
    let req = || {
        http::Request::get("/held")
            .header("host", "localhost")
            .body(TestBody::empty())
            .unwrap()
    };
    assert_eq!(held.send_request(req()).await.unwrap().status(), 200);
    let victim_cert = std::fs::read_to_string(s.pki.path("victim.pem")).unwrap();
    let victim_serial = {
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(victim_cert.as_bytes()).unwrap();
        certgate::authn::identity::ClientIdentity::from_der(&der)
            .unwrap()
            .serial
    };
    let revoking = s
        .pki
        .root
        .crl(
            &[certgate_testpki::SerialNumber::from_slice(
                &hex::decode(&victim_serial).unwrap(),
            )],
            Duration::from_secs(86400),
        )
        .unwrap();
    s.tls.publish(&[
        ("tls.crt", &rotated.cert_pem),
        ("tls.key", &rotated.key_pem),
        ("ca.crt", &bundle),
        (
            "ca.crl",
            &format!(
                "{revoking}{}",
                new_ca.crl(&[], Duration::from_secs(86400)).unwrap()
            ),
        ),
    ]);
    wait_reloads(&s.gw, "ok", 3.0).await;
    let r = held.send_request(req()).await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "revoked on its very next request, same connection"
    );
    assert!(
        victim.get("/x").await.is_err(),
        "and refused at the next handshake"
    );

    // 4. Edit the routes (ConfigMap swap): the next request sees them.
    assert_eq!(
        client.get("/new/thing").await.unwrap().text(),
        "upstream saw /new/thing"
    );
    let before = s.up.seen().len();
    s.cfg.publish(&[("certgate.toml", &(s.config)(true))]);
    wait_reloads(&s.gw, "ok", 4.0).await;
    let mut kept = client.h1().await.unwrap();
    let r = read_reply(
        kept.send_request(
            http::Request::get("/new/thing")
                .header("host", "localhost")
                .body(TestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(s.up.seen().len() > before);
    s.gw.assert_metric(
        r#"certgate_requests_total{code="200",method="GET",route="new"}"#,
        1.0,
    )
    .await;

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= MIN_LOAD, "only {ok} requests under load");
    assert_eq!(reloads(&s.gw, "error").await, 0.0);
    assert_eq!(s.tls.version, 4);
}

#[tokio::test]
async fn broken_config_is_refused_and_the_old_one_keeps_serving() {
    let mut s = setup(&[]).await;
    let client = TlsClient::new(&s.pki, s.gw.addr, Some("reader"));
    assert_eq!(client.get("/a").await.unwrap().status, 200);

    // A broken file is refused (automatically, on change), counted, and the gateway keeps serving.
    s.cfg
        .publish(&[("certgate.toml", "[listener\nbind = oops")]);
    wait_reloads(&s.gw, "error", 1.0).await;
    assert_eq!(client.get("/b").await.unwrap().status, 200);
    s.gw.wait_for_log("config reload refused").await;
    // An explicit reload says why.
    let (status, body) = admin_post(s.gw.admin, "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("certgate.toml") && body.contains("line"),
        "{body}"
    );
    wait_reloads(&s.gw, "error", 2.0).await;

    // A certificate that does not match its key is refused too.
    let other = Ca::root("Other")
        .unwrap()
        .issue(&LeafSpec::localhost_server())
        .unwrap();
    s.tls.publish(&[
        ("tls.crt", &s.pki.server.cert_pem),
        ("tls.key", &other.key_pem),
        ("ca.crt", &s.pki.root.cert_pem),
        (
            "ca.crl",
            &s.pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
        ),
    ]);
    wait_reloads(&s.gw, "error", 3.0).await;
    assert_eq!(client.get("/c").await.unwrap().status, 200);

    // Fixed again: SIGHUP reloads it.
    s.tls.publish(&[
        ("tls.crt", &s.pki.server.cert_pem),
        ("tls.key", &s.pki.server.key_pem),
        ("ca.crt", &s.pki.root.cert_pem),
        (
            "ca.crl",
            &s.pki.root.crl(&[], Duration::from_secs(86400)).unwrap(),
        ),
    ]);
    s.cfg.publish(&[("certgate.toml", &(s.config)(true))]);
    s.gw.signal("HUP");
    wait_reloads(&s.gw, "ok", 1.0).await;
    assert_eq!(client.get("/new/x").await.unwrap().status, 200);
    let (status, body) = admin_post(s.gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn revoked_client_cannot_get_back_in_by_resuming() {
    let s = setup(&[]).await;
    let victim = TlsClient::new(&s.pki, s.gw.addr, Some("victim"));
    // Resumption works, so the test below could see it.
    let first = victim.tls(&Proto::H1).await.unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    drop(first);
    assert_eq!(victim.get("/warm").await.unwrap().status, 200);
    let again = victim.tls(&Proto::H1).await.unwrap();
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    drop(again);

    // Revoke, reload, and try to resume.
    let mut s = s;
    let victim_issued = {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read_to_string(s.pki.path("victim.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        certgate::authn::identity::ClientIdentity::from_der(&der)
            .unwrap()
            .serial
    };
    let serial = certgate_testpki::SerialNumber::from_slice(&hex::decode(victim_issued).unwrap());
    s.tls.publish(&[
        ("tls.crt", &s.pki.server.cert_pem),
        ("tls.key", &s.pki.server.key_pem),
        ("ca.crt", &s.pki.root.cert_pem),
        (
            "ca.crl",
            &s.pki
                .root
                .crl(&[serial], Duration::from_secs(86400))
                .unwrap(),
        ),
    ]);
    let (status, _) = admin_post(s.gw.admin, "/reload").await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        // Either refused at the handshake (the session could not be resumed) or answered 403.
        if let Ok(r) = victim.get("/again").await {
            assert_eq!(r.status, 403, "a revoked client must not be served");
        }
    }
    assert!(s.up.seen().iter().all(|x| x.path_and_query != "/again"));
}

#[tokio::test]
async fn sigterm_turns_readiness_off_keeps_accepting_through_grace_then_drains() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let body = format!(
        "{}{}\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), "")
    );
    let mut gw = Gateway::start_with_listener(
        &pki,
        "shutdown_grace = \"1500ms\"\ndrain_timeout = \"10s\"",
        &body,
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let slow = {
        let c = client.clone();
        tokio::spawn(async move { c.get("/wait/in-flight").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    gw.signal("TERM");
    wait_for(
        "/readyz to answer 503 after SIGTERM",
        Duration::from_millis(500),
        || async {
            match admin_get(gw.admin, "/readyz").await {
                Ok((http::StatusCode::SERVICE_UNAVAILABLE, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // Still accepting during the grace period (load balancers may not have caught up).
    assert_eq!(
        client
            .get("/during-grace")
            .await
            .expect("accepted during grace")
            .status,
        200
    );
    assert_eq!(
        slow.await.unwrap().expect("in-flight completes").status,
        200
    );
    wait_for(
        "the listener to close after the grace",
        Duration::from_secs(5),
        || async {
            match client.get("/after-grace").await {
                Err(_) => Ok(()),
                Ok(r) => Err(format!("served {}", r.status)),
            }
        },
    )
    .await;
    let exit = gw.wait_exit(Duration::from_secs(8)).await;
    assert!(exit.success(), "{exit}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn expiry_shows_in_readyz_and_gauges() {
    let pki = Pki::new();
    let soon = pki
        .root
        .issue(&LeafSpec {
            not_after_secs: 2 * 86400,
            ..LeafSpec::localhost_server()
        })
        .unwrap();
    pki.write("server.pem", &soon.cert_pem);
    pki.write("server-key.pem", &soon.key_pem);
    pki.write(
        "ca.crl",
        &pki.root.crl(&[], Duration::from_secs(3 * 86400)).unwrap(),
    );
    let up = Upstream::start().await;
    let body = format!(
        "{}{}\n[expiry]\nwarning_window = \"7d\"\n",
        client_auth("require", "crls = [\"ca.crl\"]"),
        upstream_section("up", &up.url(), "")
    );
    let gw = Gateway::start(&pki, &body).await;
    let (status, ready) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let warnings: Vec<String> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("server certificate expires")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ca.crl") && w.contains("nextUpdate")),
        "{warnings:?}"
    );
    gw.wait_for_log("server certificate expires").await;
    let not_after = certgate::authn::identity::ClientIdentity::from_der(&soon.der)
        .unwrap()
        .not_after;
    gw.assert_metric(
        "certgate_server_cert_expiry_timestamp_seconds",
        not_after as f64,
    )
    .await;
}
