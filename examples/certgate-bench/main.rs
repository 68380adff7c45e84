//! Helpers for the load benchmark (`benches/load/run.sh`); not part of the gateway.
//!
//! - `certgate-bench upstream --bind ADDR [--ws-bind ADDR]`: a minimal HTTP/1.1 upstream answering
//!   `ok`, and with `--ws-bind` a WebSocket echo server.
//! - `certgate-bench idle --connect ADDR --count N --ca CA --cert CERT --key KEY [--hold SECS]`:
//!   opens N mTLS connections, sends one request on each, prints `ready N` and holds them open.
//! - `certgate-bench mint --cert CERT --jwks FILE --issuer ISS --audience AUD`: writes a JWKS
//!   with a fresh ES256 key and prints an access token bound to CERT (RFC 8705), valid 1 hour.
//! - `certgate-bench soak …`: the soak's clients (see `soak.rs`).
//! - `certgate-bench floor --bind ADDR --upstream ADDR --dir DIR`: the least a proxy on
//!   certgate's stack does per request (see `floor.rs`), for `profile.sh --peers`.
#![forbid(unsafe_code)]

mod floor;
mod soak;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The inventory with COUNT distinct credentials (3 routes each): memory, and with --url the
    /// time to write it to a PostgreSQL fleet inventory (first sync, then an update of every row).
    Inventory {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long)]
        url: Option<String>,
    },
    /// A CA (DIR/ca.pem, DIR/ca-key.pem), a client of it (DIR/client.pem, DIR/client-key.pem)
    /// and a CRL (DIR/ca.crl) revoking COUNT other serials: the large-CRL benchmark's inputs.
    /// With --pending the CRL's CA is an intermediate under the root in DIR/ca.pem, presented
    /// by the client (DIR/client.pem holds leaf and intermediate), and DIR/root.crl is the
    /// root's: the intermediate's CRL is then a pending one.
    Crl {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long)]
        pending: bool,
    },
    Upstream {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        ws_bind: Option<SocketAddr>,
    },
    /// Mixed well-behaved and slowloris clients against a running gateway, with reloads.
    Soak(soak::Args),
    Idle {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 600)]
        hold: u64,
    },
    /// A bare mTLS proxy on tokio, hyper and rustls: the stack's floor (floor.rs).
    Floor {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        /// Holds ca.pem, ca.crl, server.pem and server-key.pem (benches/load/pki.sh).
        #[arg(long)]
        dir: PathBuf,
    },
    Mint {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        jwks: PathBuf,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
    },
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match Cli::parse().command {
        Command::Upstream { bind, ws_bind } => rt.block_on(upstream(bind, ws_bind)),
        Command::Floor {
            bind,
            upstream,
            dir,
        } => rt.block_on(floor::run(bind, upstream, &dir)),
        Command::Soak(args) => {
            if !rt.block_on(soak::run(args))? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Idle {
            connect,
            count,
            ca,
            cert,
            key,
            hold,
        } => rt.block_on(idle(connect, count, ca, cert, key, hold)),
        Command::Mint {
            cert,
            jwks,
            issuer,
            audience,
        } => mint(&cert, &jwks, &issuer, &audience),
        Command::Inventory { count, url } => rt.block_on(inventory(count, url)),
        Command::Crl {
            dir,
            count,
            pending,
        } => big_crl(&dir, count, pending),
    }
}

fn big_crl(dir: &std::path::Path, count: u64, pending: bool) -> anyhow::Result<()> {
    use certgate_testpki::{Ca, LeafSpec, SerialNumber};
    std::fs::create_dir_all(dir)?;
    let root = Ca::root(if pending {
        "Bench Root CA"
    } else {
        "Bench CRL CA"
    })?;
    let intermediate = if pending {
        Some(root.intermediate("Bench CRL CA")?)
    } else {
        None
    };
    let ca = intermediate.as_ref().unwrap_or(&root);
    let client = ca.issue(&LeafSpec {
        uris: vec!["spiffe://bench/loadgen".into()],
        ..LeafSpec::client("loadgen")
    })?;
    let server = root.issue(&LeafSpec::localhost_server())?;
    std::fs::write(dir.join("ca.pem"), &root.cert_pem)?;
    let chain = match &intermediate {
        Some(i) => format!("{}{}", client.cert_pem, i.cert_pem),
        None => client.cert_pem.clone(),
    };
    std::fs::write(
        dir.join("root.crl"),
        root.crl(&[], std::time::Duration::from_secs(86400))?,
    )?;
    std::fs::write(dir.join("client.pem"), chain)?;
    std::fs::write(dir.join("client-key.pem"), &client.key_pem)?;
    std::fs::write(dir.join("server.pem"), &server.cert_pem)?;
    std::fs::write(dir.join("server-key.pem"), &server.key_pem)?;
    let t = std::time::Instant::now();
    let serials: Vec<SerialNumber> = certgate_testpki::synthetic_serials(count).collect();
    let crl = ca.crl(&serials, std::time::Duration::from_secs(86400))?;
    std::fs::write(dir.join("ca.crl"), &crl)?;
    println!(
        "CRL with {count} entries: {} MB PEM, made in {:.1} s",
        crl.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn inventory(count: usize, url: Option<String>) -> anyhow::Result<()> {
    use certgate::authn::identity::ClientIdentity;
    use certgate::authz::Verdict;
    use certgate::inventory::Inventory;
    use certgate::inventory::fleet::FleetSink;
    let before = rss_kib();
    let inv = Inventory::new(count);
    let routes = ["payments-read", "payments-write", "ledger"].map(|r| inv.route_id(r));
    let now = certgate::util::time::unix_now();
    let started = std::time::Instant::now();
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let sha = certgate::util::digest::sha256(&(i as u64).to_le_bytes());
        let id = ClientIdentity {
            subject: format!("CN=workload-{i},O=Example"),
            common_names: vec![format!("workload-{i}")],
            organizations: vec!["Example".into()],
            organizational_units: vec![],
            issuer: "CN=Bench CA".into(),
            issuer_common_names: vec!["Bench CA".into()],
            uris: vec![format!("spiffe://bench/ns/a/sa/workload-{i}")],
            dns_names: vec![],
            emails: vec![],
            serial: format!("{i:x}"),
            not_before: now - 86400,
            not_after: now + 30 * 86400,
            sha256: sha,
            sha256_hex: hex::encode(sha),
            der: CertificateDer::from(Vec::new()),
        };
        let (entry, _) = inv.observe(&id, now);
        for r in routes {
            entry.record(Some(r), Verdict::Allow, now);
        }
        entries.push(entry);
    }
    let filled = started.elapsed();
    let after = rss_kib();
    println!(
        "inventory: {count} credentials x {} routes filled in {:.2} s; RSS +{:.1} MB ({:.0} bytes per credential)",
        routes.len(),
        filled.as_secs_f64(),
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / count as f64
    );
    let Some(url) = url else { return Ok(()) };
    let mut sink = FleetSink::new("bench".into());
    let t = std::time::Instant::now();
    let done = sink
        .sync(&inv, &url, None)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "first sync (connect, schema, insert): {done:?} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for e in &entries {
        e.record(Some(routes[0]), Verdict::Allow, now + 1);
    }
    let t = std::time::Instant::now();
    let done = sink
        .sync(&inv, &url, None)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "second sync (one route of every credential changed): {done:?} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    println!("peak RSS: {:.1} MB", rss_kib() as f64 / 1024.0);
    Ok(())
}

fn mint(
    cert: &std::path::Path,
    jwks: &std::path::Path,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<()> {
    use certgate_testpki::jwt;
    let leaf = CertificateDer::from_pem_file(cert)?;
    let key = jwt::SigningKey::generate(jsonwebtoken::Algorithm::ES256, "bench");
    std::fs::write(jwks, jwt::jwks(&[&key]))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    println!(
        "{}",
        key.sign(&jwt::claims(issuer, audience, Some(leaf.as_ref()), now))
    );
    Ok(())
}

async fn upstream(bind: SocketAddr, ws_bind: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(ws_bind) = ws_bind {
        tokio::spawn(websocket_echo(
            tokio::net::TcpListener::bind(ws_bind).await?,
        ));
    }
    let listener = tokio::net::TcpListener::bind(bind).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: http::Request<Incoming>| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn websocket_echo(listener: tokio::net::TcpListener) {
    use futures_util::{SinkExt, StreamExt};
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// A client configuration presenting CERT/KEY, trusting CA, offering one ALPN protocol.
fn client_config(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[u8],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use certgate::authn::tls::provider;
    use certgate::util::pem::{load_certs, load_key, server_roots};
    let roots = server_roots(Some(ca)).map_err(anyhow::Error::msg)?;
    let chain = load_certs(cert).map_err(anyhow::Error::msg)?;
    let key = load_key(key).map_err(anyhow::Error::msg)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

async fn idle(
    connect: SocketAddr,
    count: usize,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    hold: u64,
) -> anyhow::Result<()> {
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &cert, &key, b"http/1.1")?);
    let mut held = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(200) {
        let opened = futures_join(batch.iter().map(|_| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(connect).await?;
                let tls = connector
                    .connect(ServerName::try_from("localhost")?, tcp)
                    .await?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                let task = tokio::spawn(conn);
                let req = http::Request::get("/idle")
                    .header("host", "localhost")
                    .body(Empty::<Bytes>::new())?;
                let resp = send.send_request(req).await?;
                resp.into_body().collect().await?;
                anyhow::Ok((send, task))
            }
        }))
        .await;
        for o in opened {
            held.push(o?);
        }
    }
    println!("ready {}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
