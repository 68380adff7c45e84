//! The fleet inventory on a real PostgreSQL: two gateways write one database; an outage while
//! requests flow loses nothing and counts nothing twice; a refused login is reported and the
//! gateway serves on; `certgate inventory --source postgres` shows the fleet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::services::PgServer;

fn write_config(
    pki: &Pki,
    name: &str,
    up: &str,
    inventory: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let body = format!(
        r#"[inventory]
flush_interval = "300ms"
{inventory}

{}{}
[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "up"
allow = [{{ uri = "{}" }}]

[[routes]]
name = "api"
path_prefix = "/"
upstream = "up"
allow = [{{ any = true }}]
"#,
        client_auth("require", ""),
        upstream_section("up", up, ""),
        spiffe("ops"),
    );
    write_named_config(pki, name, &body)
}

async fn launch(pki: &Pki, name: &str, up: &str, inventory: &str) -> Gateway {
    let (path, addr, admin) = write_config(pki, name, up, inventory);
    Gateway::launch(&path, addr, admin).await
}

async fn get(pki: &Pki, gw: &Gateway, who: &str, path: &str, n: usize) {
    let c = TlsClient::new(pki, gw.addr, Some(who));
    for _ in 0..n {
        c.get(path).await.expect("exchange");
    }
}

const SIGHTINGS: &str = "SELECT c.subject, s.gateway_id, s.route, s.allowed, s.refused \
     FROM certgate_sightings s JOIN certgate_credentials c USING (sha256) \
     ORDER BY 1, 2, 3";

/// Waits (up to 15 s) until the sightings table reads `want`.
async fn wait_for_rows(pg: &PgServer, want: &str) {
    wait_for_query(pg, SIGHTINGS, want).await
}

/// Waits (up to 15 s) until `sql` reads `want`.
async fn wait_for_query(pg: &PgServer, sql: &str, want: &str) {
    let what = format!("{sql} to read\n{want}\n");
    wait_for(&what, Duration::from_secs(15), || {
        let seen = pg.try_query(sql).unwrap_or_else(|e| e);
        async move {
            if seen.trim() == want.trim() {
                Ok(())
            } else {
                Err(format!("\n{seen}"))
            }
        }
    })
    .await
}

#[tokio::test]
async fn two_gateways_share_one_database_through_an_outage_without_loss_or_double_counts() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    for who in ["a", "b"] {
        pki.client(&pki.root, who, workload(who));
    }
    let mut pg = PgServer::start().await;

    // A refused login: said clearly at start, and the gateway serves anyway.
    let wrong = pg.url().replace(":secret@", ":wrong@");
    let g0 = launch(
        &pki,
        "gw0",
        &up.url(),
        &format!("postgres = \"{wrong}\"\ngateway_id = \"pod-z\""),
    )
    .await;
    get(&pki, &g0, "a", "/x", 1).await;
    g0.wait_for_log("fleet inventory unavailable").await;
    assert!(
        g0.logs().contains("password authentication failed"),
        "{}",
        g0.logs()
    );
    drop(g0);
    assert_eq!(
        pg.query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'certgate%'"),
        "0\n"
    );

    let url = pg.url();
    let inv = |id: &str| format!("postgres = \"{url}\"\ngateway_id = \"{id}\"");
    let g1 = launch(&pki, "gw1", &up.url(), &inv("pod-a")).await;
    let g2 = launch(&pki, "gw2", &up.url(), &inv("pod-b")).await;
    get(&pki, &g1, "a", "/x", 3).await;
    get(&pki, &g2, "a", "/y", 2).await;
    get(&pki, &g1, "b", "/admin/keys", 1).await;
    wait_for_rows(
        &pg,
        "CN=a,O=Example|pod-a|api|3|0\nCN=a,O=Example|pod-b|api|2|0\nCN=b,O=Example|pod-a|admin|0|1",
    )
    .await;
    // The schema was created on the empty database, once: version 1, then 2 (every
    // credential kind; revocation).
    assert_eq!(
        pg.query("SELECT version FROM certgate_schema ORDER BY 1"),
        "1\n2\n"
    );
    assert_eq!(
        pg.query("SELECT gateway_id FROM certgate_gateways ORDER BY 1"),
        "pod-a\npod-b\n"
    );

    // The database goes away while requests flow: they are served as before, and counted.
    pg.stop();
    let t = Instant::now();
    get(&pki, &g1, "a", "/x", 4).await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "requests waited on the database"
    );
    g1.wait_for_log("fleet inventory unavailable").await;
    assert!(
        g1.metric("certgate_inventory_sync_total{result=\"error\"}")
            .await
            >= 1.0
    );
    wait_for(
        "pending rows to be counted",
        Duration::from_secs(5),
        || async {
            match g1.metric("certgate_inventory_pending_rows").await {
                n if n >= 1.0 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    pg.restart().await;
    wait_for_rows(
        &pg,
        "CN=a,O=Example|pod-a|api|7|0\nCN=a,O=Example|pod-b|api|2|0\nCN=b,O=Example|pod-a|admin|0|1",
    )
    .await;
    g1.wait_for_log("fleet inventory reachable again").await;
    // Several more syncs later nothing was counted twice.
    let ok = "certgate_inventory_sync_total{result=\"ok\"}";
    let synced = g1.metric(ok).await;
    wait_for("two more syncs", Duration::from_secs(10), || async {
        match g1.metric(ok).await {
            n if n >= synced + 2.0 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    assert_eq!(
        pg.query(SIGHTINGS).trim(),
        "CN=a,O=Example|pod-a|api|7|0\nCN=a,O=Example|pod-b|api|2|0\nCN=b,O=Example|pod-a|admin|0|1"
    );
    assert_eq!(g1.metric("certgate_inventory_pending_rows").await, 0.0);

    // The fleet view: one row per credential, every gateway that saw it.
    let (path, _, _) = write_config(&pki, "report", &up.url(), &inv("cli"));
    let (code, out, err) = run_cli(&[
        "inventory",
        "--config",
        path.to_str().unwrap(),
        "--source",
        "postgres",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 2, "{v:#}");
    let a = &v["identities"][0];
    assert_eq!(a["subject"], "CN=a,O=Example");
    assert_eq!(a["gateways"], serde_json::json!(["pod-a", "pod-b"]));
    assert_eq!(a["requests_allowed"], 9);
    let b = &v["identities"][1];
    assert_eq!(b["routes_refused"], serde_json::json!(["admin"]));
    let (code, table, err) = run_cli(&[
        "inventory",
        "--config",
        path.to_str().unwrap(),
        "--source",
        "postgres",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("GATEWAYS") && table.contains("pod-a,pod-b"),
        "{table}"
    );
}

#[tokio::test]
async fn tls_to_the_database_is_verified() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    let pg = PgServer::start_with_tls(Some((&pki.server.cert_pem, &pki.server.key_pem))).await;
    let url = format!(
        "postgres://certgate:secret@localhost:{}/certgate?sslmode=require",
        pg.port
    );
    // Trusting the database's CA: TLS, and the counts arrive.
    let g = launch(
        &pki,
        "tls",
        &up.url(),
        &format!("postgres = \"{url}\"\npostgres_ca = \"ca.pem\"\ngateway_id = \"pod-tls\""),
    )
    .await;
    get(&pki, &g, "a", "/x", 2).await;
    wait_for_rows(&pg, "CN=a,O=Example|pod-tls|api|2|0").await;
    assert_eq!(
        pg.query("SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'certgate'"),
        "t\n",
        "the gateway's connection is TLS"
    );
    drop(g);
    // Without that trust (system roots only) the certificate is refused: nothing is written.
    let g = launch(
        &pki,
        "untrusted",
        &up.url(),
        &format!("postgres = \"{url}\"\ngateway_id = \"pod-x\""),
    )
    .await;
    get(&pki, &g, "a", "/x", 1).await;
    g.wait_for_log("fleet inventory unavailable").await;
    assert!(
        g.logs().to_lowercase().contains("certificate"),
        "{}",
        g.logs()
    );
    assert_eq!(
        pg.query("SELECT count(*) FROM certgate_sightings WHERE gateway_id = 'pod-x'"),
        "0\n"
    );
}

#[test]
fn check_refuses_a_bad_database_url_naming_the_key() {
    let pki = Pki::new();
    let (path, _, _) = write_config(
        &pki,
        "bad",
        "http://127.0.0.1:1",
        "postgres = \"mysql://x\"",
    );
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains("inventory.postgres: not a PostgreSQL URL"),
        "{out}{err}"
    );
}

/// A loopback TCP proxy to PostgreSQL that, when armed, forwards the next `COMMIT` and then cuts
/// the connection before the answer comes back: the commit happened, the gateway cannot know.
struct CommitCutter {
    addr: SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CommitCutter {
    async fn start(upstream: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (a, c) = (a.clone(), c.clone());
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let commit = buf[..n].windows(6).any(|w| w == b"COMMIT");
                        if commit && a.swap(false, Ordering::SeqCst) {
                            // Let the server commit, then drop the answer and the connection.
                            back.abort();
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            c.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                });
            }
        });
        Self { addr, armed, cuts }
    }
}

#[tokio::test]
async fn a_batch_whose_commit_answer_is_lost_is_not_counted_twice() {
    use std::sync::atomic::Ordering;
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "a", workload("a"));
    let pg = PgServer::start().await;
    let cutter = CommitCutter::start(SocketAddr::from(([127, 0, 0, 1], pg.port))).await;
    let url = format!("postgres://certgate:secret@{}/certgate", cutter.addr);
    let g = launch(
        &pki,
        "gw",
        &up.url(),
        &format!("postgres = \"{url}\"\ngateway_id = \"pod-a\""),
    )
    .await;
    get(&pki, &g, "a", "/x", 2).await;
    wait_for_rows(&pg, "CN=a,O=Example|pod-a|api|2|0").await;
    // The next batch commits, but the gateway never hears so: it retries the same batch.
    cutter.armed.store(true, Ordering::SeqCst);
    get(&pki, &g, "a", "/x", 3).await;
    g.wait_for_log("AlreadyApplied").await;
    // The cutter counts its cut after letting the server commit (300 ms): the retry can be
    // logged first.
    wait_until("the one cut to be counted", Duration::from_secs(5), || {
        cutter.cuts.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        cutter.cuts.load(Ordering::SeqCst),
        1,
        "exactly one commit answer lost"
    );
    wait_for_rows(&pg, "CN=a,O=Example|pod-a|api|5|0").await;
    get(&pki, &g, "a", "/x", 1).await;
    wait_for_rows(&pg, "CN=a,O=Example|pod-a|api|6|0").await;
}

#[tokio::test]
async fn configured_credentials_reach_the_database_before_their_first_use() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let pg = PgServer::start().await;
    pki.write("pepper", "an HMAC pepper of at least thirty-two bytes");
    let inv = format!(
        "postgres = \"{}\"\ngateway_id = \"pod-a\"\n[api_keys]\nfile = \"api-keys.toml\"\npepper_file = \"pepper\"",
        pg.url()
    );
    let (path, addr, admin) = write_config(&pki, "gw", &up.url(), &inv);
    let (code, key, err) = run_cli(&[
        "keys",
        "new",
        "--config",
        path.to_str().unwrap(),
        "--owner",
        "team-erp",
        "--sunset",
        "2099-03-31",
        "--routes",
        "api",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = key.trim()[4..13].to_string();
    // The "api" route takes keys (listener optional) for the second half.
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("mode = \"require\"", "mode = \"optional\"")
        .replace("name = \"api\"\n", "name = \"api\"\napi_keys = true\n");
    std::fs::write(&path, config).unwrap();
    let g = Gateway::launch(&path, addr, admin).await;
    // Listed in the fleet with its owner and sunset, never used (first and last seen 0).
    let facts = "SELECT kind, subject, owner, extract(epoch FROM not_after)::bigint, \
                 extract(epoch FROM first_seen)::bigint, extract(epoch FROM last_seen)::bigint \
                 FROM certgate_credentials WHERE kind <> 'certificate'";
    wait_for_query(&pg, facts, &format!("api_key|{id}|team-erp|4078598400|0|0")).await;
    let (code, out, err) = run_cli(&[
        "inventory",
        "--config",
        path.to_str().unwrap(),
        "--source",
        "postgres",
        "--kind",
        "api_key",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id) && out.contains("never"), "{out}");
    assert!(!out.contains(key.trim()), "never the key");
    // Once used, its first use is the real one, not the 0 of "never used".
    let client = TlsClient::new(&pki, g.addr, None);
    let r = client.get_with("/x", &[("x-api-key", key.trim())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let used = "SELECT extract(epoch FROM first_seen)::bigint > 0, \
                extract(epoch FROM last_seen)::bigint > 0 FROM certgate_credentials \
                WHERE kind = 'api_key'";
    wait_for_query(&pg, used, "t|t").await;
}
