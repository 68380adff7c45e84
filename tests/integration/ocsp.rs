//! OCSP for client certificates against a real responder: `openssl ocsp -index … -reqin …
//! -respout …` run per request behind a small HTTP server on 127.0.0.1 (openssl's own `-port`
//! listens on every interface).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use certgate_testpki::{Ca, Issued, LeafSpec, LeafUsage};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::common::*;

/// An OCSP responder for one CA: its index says which serials are good or revoked; others
/// are unknown.
struct Responder {
    addr: std::net::SocketAddr,
    dir: PathBuf,
    hits: Arc<AtomicUsize>,
    /// Flip a bit of every response's signature (sent without certificates).
    tamper: Arc<AtomicBool>,
    /// Answer every request with the first response made (a replay).
    replay: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl Responder {
    /// Answers for `ca`, signed by `signer` (the CA itself or a delegated responder).
    async fn start(pki: &Pki, name: &str, ca: &Ca, signer: (&str, &str)) -> Self {
        let dir = pki.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("signer.pem"), signer.0).unwrap();
        std::fs::write(dir.join("signer-key.pem"), signer.1).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let tamper = Arc::new(AtomicBool::new(false));
        let replay = Arc::new(AtomicBool::new(false));
        let (d, h, t, rp) = (dir.clone(), hits.clone(), tamper.clone(), replay.clone());
        let task = tokio::spawn(async move {
            let n = Arc::new(AtomicUsize::new(0));
            while let Ok((tcp, _)) = listener.accept().await {
                let (d, h, t, n, rp) = (d.clone(), h.clone(), t.clone(), n.clone(), rp.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (d, h, t, n, rp) =
                            (d.clone(), h.clone(), t.clone(), n.clone(), rp.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let i = n.fetch_add(1, Ordering::SeqCst);
                            if rp.load(Ordering::SeqCst) {
                                let first = std::fs::read(d.join("resp-0.der")).unwrap();
                                return Ok::<_, Infallible>(Response::new(TestBody::bytes(
                                    Bytes::from(first),
                                )));
                            }
                            let tampered = t.load(Ordering::SeqCst);
                            let mut der =
                                tokio::task::spawn_blocking(move || answer(&d, i, &body, tampered))
                                    .await
                                    .unwrap();
                            if tampered {
                                let last = der.len() - 1;
                                der[last] ^= 0x01;
                            }
                            let mut r = Response::new(TestBody::bytes(Bytes::from(der)));
                            r.headers_mut().insert(
                                "content-type",
                                "application/ocsp-response".parse().unwrap(),
                            );
                            Ok::<_, Infallible>(r)
                        }
                    });
                    serve_io(TokioIo::new(tcp), svc, false).await;
                });
            }
        })
        .abort_handle();
        Self {
            addr,
            dir,
            hits,
            tamper,
            replay,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Lists `cert` as good (`revoked = false`) or revoked.
    fn list(&self, cert: &Issued, revoked: bool) {
        let serial = cert.serial_hex.to_uppercase();
        let line = if revoked {
            format!("R\t301231235959Z\t250101000000Z\t{serial}\tunknown\t/CN={serial}\n")
        } else {
            format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN={serial}\n")
        };
        let index = self.dir.join("index.txt");
        let mut all = std::fs::read_to_string(&index).unwrap();
        all.push_str(&line);
        std::fs::write(index, all).unwrap();
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One `openssl ocsp` run: request in, response out. `bare`: without the signer's certificate,
/// so the response's own signature is its last bytes.
fn answer(dir: &std::path::Path, i: usize, request: &[u8], bare: bool) -> Vec<u8> {
    let req = dir.join(format!("req-{i}.der"));
    let resp = dir.join(format!("resp-{i}.der"));
    std::fs::write(&req, request).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["ocsp", "-index", "index.txt", "-CA", "ca.pem"])
        .args(["-rsigner", "signer.pem", "-rkey", "signer-key.pem"])
        .arg("-reqin")
        .arg(&req)
        .arg("-respout")
        .arg(&resp)
        .args(["-nmin", "10"])
        .args(if bare {
            &["-resp_no_certs"][..]
        } else {
            &[][..]
        })
        .current_dir(dir)
        .output()
        .expect("openssl ocsp");
    assert!(
        out.status.success(),
        "openssl ocsp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(resp).unwrap()
}

fn config(up: &str, mode: &str, responder: &str) -> String {
    config_with(up, mode, responder, "1h")
}

fn config_with(up: &str, mode: &str, responder: &str, max_age: &str) -> String {
    format!(
        "[reload]\nwatch = false\n\n{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n",
        client_auth(
            "require",
            &format!(
                "ocsp = \"{mode}\"\nocsp_responder = \"{responder}\"\nocsp_timeout = \"500ms\"\nocsp_max_age = \"{max_age}\""
            )
        ),
        upstream_section("up", up, ""),
    )
}

async fn status(pki: &Pki, gw: &Gateway, who: &str) -> u16 {
    TlsClient::new(pki, gw.addr, Some(who))
        .get("/x")
        .await
        .expect("TLS handshake and an answer")
        .status
        .as_u16()
}

fn checks(result: &str) -> String {
    format!("certgate_ocsp_checks_total{{result=\"{result}\"}}")
}

#[tokio::test]
async fn good_revoked_and_unknown_answers_with_a_cache() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.client(&pki.root, "good", workload("good"));
    let revoked = pki.client(&pki.root, "revoked", workload("revoked"));
    pki.client(&pki.root, "stranger", workload("stranger"));
    let responder = Responder::start(
        &pki,
        "ocsp",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    responder.list(&good, false);
    responder.list(&revoked, true);
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &responder.url())).await;

    assert_eq!(status(&pki, &gw, "good").await, 200);
    gw.assert_metric(&checks("good"), 1.0).await;
    // Cached: a second connection of the same certificate does not ask again.
    let asked = responder.hits();
    assert_eq!(status(&pki, &gw, "good").await, 200);
    assert_eq!(responder.hits(), asked, "answered from the cache");
    gw.assert_metric(&checks("good"), 1.0).await;
    gw.assert_metric(&checks("cached"), 1.0).await;

    // Revoked: 403 on every request, in any mode, with the rule in the access log; nothing
    // reaches the upstream.
    let forwarded = up.seen().len();
    assert_eq!(status(&pki, &gw, "revoked").await, 403);
    assert_eq!(status(&pki, &gw, "revoked").await, 403);
    gw.assert_metric(&checks("revoked"), 1.0).await;
    gw.assert_metric(&checks("cached"), 2.0).await;
    gw.wait_for_log("\"rule\":\"ocsp.revoked\"").await;
    gw.wait_for_log("client certificate revoked (OCSP)").await;
    assert_eq!(up.seen().len(), forwarded);

    // Unknown to the responder: refused under "hard"...
    assert_eq!(status(&pki, &gw, "stranger").await, 403);
    gw.assert_metric(&checks("unknown"), 1.0).await;
    drop(gw);
    // ...allowed (and counted) under "soft".
    let gw = Gateway::start(&pki, &config(&up.url(), "soft", &responder.url())).await;
    assert_eq!(status(&pki, &gw, "stranger").await, 200);
    gw.assert_metric(&checks("unknown"), 1.0).await;
    assert_eq!(
        status(&pki, &gw, "revoked").await,
        403,
        "soft never lets revoked in"
    );
}

#[tokio::test]
async fn concurrent_connections_share_one_lookup() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.client(&pki.root, "good", workload("good"));
    let responder = Responder::start(
        &pki,
        "ocsp",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    responder.list(&good, false);
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &responder.url())).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = TlsClient::new(&pki, gw.addr, Some("good"));
            tokio::spawn(async move { client.get("/x").await.map(|r| r.status) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("answer"), 200);
    }
    assert_eq!(responder.hits(), 1, "one lookup for 8 connections");
    gw.assert_metric(&checks("good"), 1.0).await;
    gw.assert_metric(&checks("cached"), 7.0).await;
}

#[tokio::test]
async fn a_delegated_responder_is_believed_a_stranger_or_a_bad_signature_is_not() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.client(&pki.root, "good", workload("good"));
    let delegate = pki
        .root
        .issue(&LeafSpec {
            usage: LeafUsage::OcspSigning,
            ..LeafSpec::client("OCSP Responder")
        })
        .unwrap();
    let delegated = Responder::start(
        &pki,
        "delegated",
        &pki.root,
        (&delegate.cert_pem, &delegate.key_pem),
    )
    .await;
    delegated.list(&good, false);
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &delegated.url())).await;
    assert_eq!(status(&pki, &gw, "good").await, 200);
    gw.assert_metric(&checks("good"), 1.0).await;
    drop(gw);

    // A responder certificate from another CA: not the issuer's delegate.
    let other = Ca::root("Other CA").unwrap();
    let impostor = other
        .issue(&LeafSpec {
            usage: LeafUsage::OcspSigning,
            ..LeafSpec::client("Impostor")
        })
        .unwrap();
    let stranger = Responder::start(
        &pki,
        "stranger",
        &pki.root,
        (&impostor.cert_pem, &impostor.key_pem),
    )
    .await;
    stranger.list(&good, false);
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &stranger.url())).await;
    assert_eq!(status(&pki, &gw, "good").await, 503);
    gw.assert_metric(&checks("invalid"), 1.0).await;
    gw.wait_for_log("OCSP lookup failed").await;
    drop(gw);

    // The issuer's own responder, its signature damaged in transit.
    let tampered = Responder::start(
        &pki,
        "tampered",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    tampered.list(&good, false);
    tampered.tamper.store(true, Ordering::SeqCst);
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &tampered.url())).await;
    assert_eq!(status(&pki, &gw, "good").await, 503);
    gw.assert_metric(&checks("invalid"), 1.0).await;
    gw.wait_for_log("bad signature").await;
}

#[tokio::test]
async fn a_down_responder_refuses_in_hard_mode_and_allows_in_soft() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.client(&pki.root, "good", workload("good"));
    let responder = Responder::start(
        &pki,
        "ocsp",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    responder.list(&good, false);
    let url = responder.url();
    responder.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let gw = Gateway::start(&pki, &config(&up.url(), "hard", &url)).await;
    assert_eq!(status(&pki, &gw, "good").await, 503);
    gw.assert_metric(&checks("error"), 1.0).await;
    drop(gw);
    let gw = Gateway::start(&pki, &config(&up.url(), "soft", &url)).await;
    assert_eq!(status(&pki, &gw, "good").await, 200);
    gw.assert_metric(&checks("error"), 1.0).await;
    gw.wait_for_log("OCSP status not confirmed; allowed").await;
}

#[tokio::test]
async fn a_replayed_response_is_refused() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let good = pki.client(&pki.root, "good", workload("good"));
    let other = pki.client(&pki.root, "other", workload("other"));
    let responder = Responder::start(
        &pki,
        "ocsp",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    responder.list(&good, false);
    responder.list(&other, false);
    // Answers stand for one second, so the next connection asks again.
    let gw = Gateway::start(
        &pki,
        &config_with(&up.url(), "hard", &responder.url(), "1s"),
    )
    .await;
    assert_eq!(status(&pki, &gw, "good").await, 200);
    responder.replay.store(true, Ordering::SeqCst);
    // The first answer again, for another certificate: not about it.
    assert_eq!(status(&pki, &gw, "other").await, 503);
    gw.wait_for_log("the response is about another certificate")
        .await;
    // And for the same certificate, once its answer expired: the nonce is not this request's.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(status(&pki, &gw, "good").await, 503);
    gw.wait_for_log("nonce is not the request's").await;
    gw.assert_metric(&checks("invalid"), 2.0).await;
}

#[tokio::test]
async fn the_responder_comes_from_the_certificates_aia() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let responder = Responder::start(
        &pki,
        "ocsp",
        &pki.root,
        (&pki.root.cert_pem, &pki.root.key_pem()),
    )
    .await;
    // A client certificate naming the responder in its AIA, issued with openssl.
    openssl_client(
        &pki,
        "aia-client",
        "/CN=aia-client",
        &format!("authorityInfoAccess=OCSP;URI:{}", responder.url()),
        Some("0x7A1A"),
    );
    std::fs::write(
        responder.dir.join("index.txt"),
        "R\t301231235959Z\t250101000000Z\t7A1A\tunknown\t/CN=aia-client\n",
    )
    .unwrap();
    // No ocsp_responder: the AIA names where to ask, on a host ocsp_aia_hosts allows; the
    // answer there is "revoked".
    let gw = Gateway::start(&pki, &aia_config(&up.url(), &responder.url())).await;
    assert_eq!(status(&pki, &gw, "aia-client").await, 403);
    assert_eq!(responder.hits(), 1);
    gw.assert_metric(&checks("revoked"), 1.0).await;
}

/// OCSP on without `ocsp_responder`: only AIA URLs on the host:port of `allowed` are fetched.
fn aia_config(up: &str, allowed: &str) -> String {
    let allowed: http::Uri = allowed.parse().unwrap();
    config(up, "hard", "").replace(
        "ocsp_responder = \"\"",
        &format!(
            "ocsp_responder = \"\"\nocsp_aia_hosts = [\"{}\"]",
            allowed.authority().unwrap()
        ),
    )
}

#[tokio::test]
async fn a_certificates_aia_is_fetched_only_from_an_allowed_host_and_never_redirected() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    // Where an attacker's certificate points: a metadata-like service, and a redirect to it
    // from a host that is allowed.
    let metadata = DocServer::start("secret", None).await;
    let allowed = DocServer::start("", None).await;
    allowed.set(302, &format!("http://{}/latest/meta-data", metadata.addr));
    let gw = Gateway::start(
        &pki,
        &aia_config(&up.url(), &format!("http://{}/", allowed.addr)),
    )
    .await;
    // A certificate whose AIA names the gateway's own admin /reload, one naming the metadata
    // service, one naming the allowed host (which redirects).
    for (name, url) in [
        ("to-admin", format!("http://{}/reload", gw.admin)),
        (
            "to-metadata",
            format!("http://{}/latest/meta-data", metadata.addr),
        ),
        ("to-allowed", format!("http://{}/ocsp", allowed.addr)),
    ] {
        openssl_client(
            &pki,
            name,
            &format!("/CN={name}"),
            &format!("authorityInfoAccess=OCSP;URI:{url}"),
            None,
        );
    }
    assert_eq!(status(&pki, &gw, "to-admin").await, 503, "hard: no answer");
    assert_eq!(status(&pki, &gw, "to-metadata").await, 503);
    assert_eq!(metadata.hits(), 0, "never fetched");
    gw.assert_metric("certgate_config_reloads_total{result=\"ok\"}", 0.0)
        .await;
    gw.wait_for_log("not on an allowed host (client_auth.ocsp_aia_hosts)")
        .await;
    assert_eq!(status(&pki, &gw, "to-allowed").await, 503);
    assert_eq!(allowed.hits(), 1, "asked once");
    assert_eq!(metadata.hits(), 0, "the redirect is not followed");
    gw.assert_metric(&checks("error"), 3.0).await;
}

#[test]
fn ocsp_without_a_responder_or_allowed_hosts_is_a_config_error() {
    let pki = Pki::new();
    let config = write_check_config(&pki, &config("http://127.0.0.1:9", "soft", ""));
    let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("client_auth.ocsp"), "{err}");
    assert!(err.contains("ocsp_aia_hosts"), "{err}");
}
