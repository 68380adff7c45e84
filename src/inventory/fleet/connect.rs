//! Connecting to PostgreSQL: the URL, and TLS through rustls when it asks for it
//! (`sslmode=require`, or `prefer`). certgate always verifies the server's certificate (like
//! libpq's `verify-full`), against `postgres_ca` or the system roots.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::inventory::InventoryError;

/// Parses and checks a `postgres://` URL (or key=value string).
pub fn parse_url(url: &str) -> Result<Config, InventoryError> {
    let mut c = Config::from_str(url).map_err(InventoryError::Url)?;
    if c.get_hosts().is_empty() {
        return Err(InventoryError::NoHost);
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    c.application_name("certgate");
    Ok(c)
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
pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Client, InventoryError> {
    let config = parse_url(url)?;
    let chain = InventoryError::database("");
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = config.connect(NoTls).await.map_err(chain)?;
        tokio::spawn(drive(conn));
        return Ok(client);
    }
    let roots = match ca {
        Some(p) => crate::util::pem::server_roots(Some(p))?,
        None => system_roots(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(InventoryError::Tls)?
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
