//! Helpers for the load benchmark (`benches/load/run.sh`); not part of the gateway.
//!
//! - `certgate-bench upstream --bind ADDR`: a minimal HTTP/1.1 upstream answering `ok`.
//! - `certgate-bench idle --connect ADDR --count N --ca CA --cert CERT --key KEY [--hold SECS]`:
//!   opens N mTLS connections, sends one request on each, prints `ready N` and holds them open.
//! - `certgate-bench mint --cert CERT --jwks FILE --issuer ISS --audience AUD`: writes a JWKS
//!   with a fresh ES256 key and prints an access token bound to CERT (RFC 8705), valid 1 hour.
#![forbid(unsafe_code)]

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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Upstream {
        #[arg(long)]
        bind: SocketAddr,
    },
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
        Command::Upstream { bind } => rt.block_on(upstream(bind)),
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
    }
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

async fn upstream(bind: SocketAddr) -> anyhow::Result<()> {
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

async fn idle(
    connect: SocketAddr,
    count: usize,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    hold: u64,
) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca)? {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let mut config = rustls::ClientConfig::builder_with_provider(certgate::authn::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
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
