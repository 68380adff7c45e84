//! Connecting to PostgreSQL: the URL, and TLS through rustls when it asks for it
//! (`sslmode=require`, or `prefer`). certgate always verifies the server's certificate (like
//! libpq's `verify-full`), against `postgres_ca` or the system roots.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

/// Parses and checks a `postgres://` URL (or key=value string).
pub fn parse_url(url: &str) -> Result<Config, String> {
    let mut c = Config::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if c.get_hosts().is_empty() {
        return Err("no host".into());
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    c.application_name("certgate");
    Ok(c)
}

/// Trust anchors from a PEM file.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    roots
}

/// Connects (TLS when the URL's sslmode asks for it) and drives the connection in the
/// background. Errors are the whole cause chain ("password authentication failed …").
pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Client, String> {
    let config = parse_url(url)?;
    let chain = |e: tokio_postgres::Error| crate::util::text::error_chain(&e);
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = config.connect(NoTls).await.map_err(chain)?;
        tokio::spawn(drive(conn));
        return Ok(client);
    }
    let roots = match ca {
        Some(p) => load_roots(p)?,
        None => system_roots(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, conn) = config.connect(tls).await.map_err(chain)?;
    tokio::spawn(drive(conn));
    Ok(client)
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!(target: "certgate::inventory", error = %crate::util::text::error_chain(&e), "fleet inventory connection ended");
    }
}
