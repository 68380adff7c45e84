//! TLS to `https://` endpoints: verification roots (a CA bundle or the system's) and an
//! optional client certificate for mTLS to the upstream.

use http::uri::Scheme;
use rustls::RootCertStore;

use crate::authn::tls;
use crate::config::{ConfigFile, RawUpstream};

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
    let mut roots = RootCertStore::empty();
    if https {
        match &raw.ca {
            Some(p) => {
                for c in tls::load_certs(&file.resolve(p)).map_err(|e| ("ca", e))? {
                    roots
                        .add(c)
                        .map_err(|e| ("ca", format!("not a usable CA certificate: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err((
                        "ca",
                        "no system CA roots found (install ca-certificates) and no ca given".into(),
                    ));
                }
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("url", e.to_string()))?
        .with_root_certificates(roots);
    match (&raw.client_cert, &raw.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), Some(k)) => {
            let chain = tls::load_certs(&file.resolve(c)).map_err(|e| ("client_cert", e))?;
            let key = tls::load_key(&file.resolve(k)).map_err(|e| ("client_key", e))?;
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
