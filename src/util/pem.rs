//! Reading the PEM files a config names: certificates, private keys, CA bundles. Errors name
//! the file and never contain key material.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file (or the system roots) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid PEM certificate file: {why}", path.display())]
    BadPem { path: PathBuf, why: String },
    #[error("{}: no CERTIFICATE block found (expected PEM)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM expected): {why}", path.display())]
    NoKey { path: PathBuf, why: String },
    #[error("{}: not a usable CA certificate: {why}", path.display())]
    BadCa { path: PathBuf, why: String },
    #[error("no system CA roots found (install ca-certificates) and no CA bundle given")]
    NoSystemRoots,
}

/// The whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file; at least one is required.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::BadPem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(LoadError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| LoadError::NoKey {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Roots to verify a server with: the certificates of a PEM bundle, or the system's roots.
pub fn server_roots(ca: Option<&Path>) -> Result<RootCertStore, LoadError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(p) => {
            for c in load_certs(p)? {
                roots.add(c).map_err(|e| LoadError::BadCa {
                    path: p.to_path_buf(),
                    why: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(LoadError::NoSystemRoots);
            }
        }
    }
    Ok(roots)
}
