//! TLS to `https://` endpoints: verification roots (a CA bundle or the system's) and an
//! optional client certificate for mTLS to the upstream.

use http::uri::Scheme;
use rustls::RootCertStore;

use crate::authn::tls;
use crate::config::{ConfigFile, RawUpstream};
use crate::util::pem;

/// The rustls client config for an upstream: verification roots, optional client certificate.
pub(super) fn client_tls(
    raw: &RawUpstream,
    scheme: &Scheme,
    file: &ConfigFile,
) -> Result<rustls::ClientConfig, (&'static str, String)> {
    let https = *scheme == Scheme::HTTPS;
    if !https {
        for (key, set) in [
            ("ca", raw.ca.is_some()),
            ("server_name", raw.server_name.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
        ] {
            if set {
                return Err((key, "only applies to https:// endpoints".into()));
            }
        }
    }
    let roots = if https {
        pem::server_roots(raw.ca.as_ref().map(|p| file.resolve(p)).as_deref())
            .map_err(|e| ("ca", e.to_string()))?
    } else {
        RootCertStore::empty()
    };
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("url", e.to_string()))?
        .with_root_certificates(roots);
    match (&raw.client_cert, &raw.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), Some(k)) => {
            let chain =
                pem::load_certs(&file.resolve(c)).map_err(|e| ("client_cert", e.to_string()))?;
            let key = pem::load_key(&file.resolve(k)).map_err(|e| ("client_key", e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("client_key", format!("does not fit client_cert: {e}")))
        }
        (Some(_), None) => Err(("client_key", "missing: client_cert needs client_key".into())),
        (None, Some(_)) => Err((
            "client_cert",
            "missing: client_key needs client_cert".into(),
        )),
    }
}
