//! CRLs: loaded from files and checked before the verifier gets them. A CRL the verifier would
//! reject, or one that is not provably from a trusted CA (issuer unknown, issuer without
//! cRLSign, bad signature), is *unusable*: reported, and left out, so it cannot take the other
//! CAs down with it; its CA's clients are then revocation-unknown.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::tls::read;

/// A loaded CRL plus what `check` and metrics want to know about it.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    pub der: CertificateRevocationListDer<'static>,
    pub issuer: String,
    /// The issuer's name as DER, to match certificates issued by it.
    pub issuer_der: Vec<u8>,
    /// Seconds since the epoch; `None` when the CRL has no nextUpdate.
    pub next_update: Option<i64>,
    pub revoked_count: usize,
}

/// Reads CRLs from a file holding PEM `X509 CRL` blocks or one DER CRL. `Err` for a file that
/// cannot be read (a config error) is `Ok(Err(..))`-free: unreadable is the outer error,
/// unparseable the inner one (an unusable CRL).
pub fn load_crls(path: &Path) -> Result<Result<Vec<LoadedCrl>, String>, String> {
    let bytes = read(path)?;
    Ok(parse_crls(&bytes))
}

/// CRLs from PEM `X509 CRL` blocks or one DER CRL.
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<LoadedCrl>, String> {
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    let ders = if pem.is_empty() {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    } else {
        pem
    };
    ders.into_iter()
        .map(|der| {
            let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
                .map_err(|e| format!("not a CRL (PEM or DER expected): {e}"))?;
            Ok(LoadedCrl {
                issuer: crate::authn::identity::rfc4514(crl.issuer()),
                issuer_der: crl.issuer().as_raw().to_vec(),
                next_update: crl.next_update().map(|t| t.timestamp()),
                revoked_count: crl.iter_revoked_certificates().count(),
                der: der.clone(),
            })
        })
        .collect()
}

/// Why `crl` cannot be used with the CAs `cas` (trust anchors and intermediates), if it cannot.
pub fn unusable(crl: &LoadedCrl, cas: &[CertificateDer<'_>]) -> Option<String> {
    // What the verifier itself would refuse: unknown critical extensions, delta CRLs, …
    if let Err(e) = webpki::OwnedCertRevocationList::from_der(crl.der.as_ref()) {
        return Some(format!("rejected by the verifier: {e:?}"));
    }
    let (_, parsed) = match x509_parser::parse_x509_crl(crl.der.as_ref()) {
        Ok(p) => p,
        Err(e) => return Some(format!("not parseable: {e}")),
    };
    let issuers: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, c)| c))
        .filter(|c| c.subject().as_raw() == parsed.issuer().as_raw())
        .collect();
    if issuers.is_empty() {
        return Some(format!(
            "issued by {}, which is not in the trust store or the intermediates",
            crl.issuer
        ));
    }
    let mut why = String::new();
    for issuer in &issuers {
        if let Ok(Some(ku)) = issuer.key_usage()
            && !ku.value.crl_sign()
        {
            why = format!(
                "its issuer {} may not sign CRLs (keyUsage without cRLSign)",
                crl.issuer
            );
            continue;
        }
        match parsed.verify_signature(issuer.public_key()) {
            Ok(()) => return None,
            Err(e) => why = format!("bad signature (not signed by {}): {e}", crl.issuer),
        }
    }
    Some(why)
}
