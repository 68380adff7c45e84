//! The TLS inputs of a snapshot: the listener's certificate and key, and who may connect —
//! trust anchors, intermediates and CRLs compiled into the client verifier.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

use crate::authn::identity::ClientIdentity;
use crate::authn::tls::{self, ClientAuthSettings};
use crate::config::{ConfigError, ConfigFile, StaleCrl, UnknownRevocation};
use crate::util::time::{fmt_time, unix_now};

use super::snapshot::{CertSummary, CrlSummary};

/// The listener's certificate chain and key.
pub(super) struct ServerCert {
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
    pub(super) identity: ClientIdentity,
}

impl ServerCert {
    /// Loads `listener.cert` and `listener.key`; an expired certificate is an error (every
    /// client would refuse the handshake).
    pub(super) fn load(file: &ConfigFile) -> Result<Self, ConfigError> {
        let l = &file.raw.listener;
        let cert_path = file.resolve(&l.cert);
        let chain = tls::load_certs(&cert_path).map_err(|e| file.invalid("listener.cert", e))?;
        let key =
            tls::load_key(&file.resolve(&l.key)).map_err(|e| file.invalid("listener.key", e))?;
        let identity = ClientIdentity::from_der(chain[0].as_ref())
            .map_err(|e| file.invalid("listener.cert", e))?;
        if identity.not_after < unix_now() {
            return Err(file.invalid(
                "listener.cert",
                format!(
                    "{}: the server certificate expired at {}",
                    cert_path.display(),
                    fmt_time(identity.not_after)
                ),
            ));
        }
        Ok(Self {
            chain,
            key,
            identity,
        })
    }
}

/// Who may connect: trust anchors, intermediates and CRLs, compiled into the verifier.
pub(super) struct Trust {
    pub(super) verifier: Arc<dyn ClientCertVerifier>,
    pub(super) anchors: Vec<CertSummary>,
    pub(super) intermediates: Vec<CertSummary>,
    pub(super) crls: Vec<CrlSummary>,
}

impl Trust {
    pub(super) fn load(file: &ConfigFile, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let ca = &file.raw.client_auth;
        if ca.trust_store.is_empty() {
            return Err(file.invalid(
                "client_auth.trust_store",
                "at least one PEM bundle is required",
            ));
        }
        let mut roots = RootCertStore::empty();
        let mut anchors = Vec::new();
        for (i, p) in ca.trust_store.iter().enumerate() {
            let key = format!("client_auth.trust_store[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                anchors.push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                roots.add(cert).map_err(|e| {
                    file.invalid(
                        &key,
                        format!("{}: not a usable trust anchor: {e}", path.display()),
                    )
                })?;
            }
        }
        let mut intermediate_certs = Vec::new();
        let mut intermediates = Vec::new();
        for (i, p) in ca.intermediates.iter().enumerate() {
            let key = format!("client_auth.intermediates[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                intermediates.push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                intermediate_certs.push(cert);
            }
        }
        let crls = load_crls(file, &anchors, &intermediates, warnings)?;
        let verifier = tls::client_verifier(ClientAuthSettings {
            mode: ca.mode,
            roots,
            crls: crls.iter().map(|c| c.crl.der.clone()).collect(),
            intermediates: intermediate_certs,
            revocation_scope: ca.revocation_scope,
            unknown_revocation: ca.unknown_revocation,
            stale_crl: ca.stale_crl,
        })
        .map_err(|e| file.invalid("client_auth", e))?;
        Ok(Self {
            verifier,
            anchors,
            intermediates,
            crls,
        })
    }
}

/// `client_auth.crls`: each must be issued by a CA in the trust store or the intermediates (a
/// CRL for a CA certgate does not trust is a mistake, usually a wrong file); stale ones and CAs
/// without a CRL are warnings.
fn load_crls(
    file: &ConfigFile,
    anchors: &[CertSummary],
    intermediates: &[CertSummary],
    warnings: &mut Vec<String>,
) -> Result<Vec<CrlSummary>, ConfigError> {
    let ca = &file.raw.client_auth;
    let now = unix_now();
    let mut crls = Vec::new();
    for (i, p) in ca.crls.iter().enumerate() {
        let key = format!("client_auth.crls[{i}]");
        let path = file.resolve(p);
        for crl in tls::load_crls(&path).map_err(|e| file.invalid(&key, e))? {
            if !anchors
                .iter()
                .chain(intermediates)
                .any(|c| c.subject == crl.issuer)
            {
                return Err(file.invalid(
                    &key,
                    format!(
                        "{}: CRL issued by {}, which is neither in client_auth.trust_store nor in client_auth.intermediates",
                        path.display(),
                        crl.issuer
                    ),
                ));
            }
            if crl.next_update.is_some_and(|t| t < now) {
                warnings.push(format!(
                    "{}: CRL of {} is past its nextUpdate{}",
                    path.display(),
                    crl.issuer,
                    match ca.stale_crl {
                        StaleCrl::Deny =>
                            "; with stale_crl = \"deny\" every client of that CA is refused",
                        StaleCrl::Warn => "",
                    }
                ));
            }
            crls.push(CrlSummary {
                file: path.clone(),
                crl,
            });
        }
    }
    if crls.is_empty() {
        warnings.push(
            "client_auth.crls is empty: revoked client certificates will be accepted until they expire"
                .to_string(),
        );
        return Ok(crls);
    }
    let deny = ca.unknown_revocation == UnknownRevocation::Deny;
    for c in anchors.iter().chain(intermediates) {
        if !crls.iter().any(|crl| crl.crl.issuer == c.subject) {
            warnings.push(format!(
                "no CRL loaded for CA {} ({}); with unknown_revocation = \"{}\" its certificates are {}",
                c.subject,
                c.file.display(),
                if deny { "deny" } else { "allow" },
                if deny { "refused" } else { "not revocation-checked" },
            ));
        }
    }
    Ok(crls)
}

fn summarize(path: &Path, cert: &CertificateDer<'_>) -> Result<CertSummary, String> {
    let id =
        ClientIdentity::from_der(cert.as_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(CertSummary {
        file: path.to_path_buf(),
        subject: id.subject,
        not_after: id.not_after,
    })
}
