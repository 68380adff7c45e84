//! Revocation lookups against the loaded CRLs, after the chain itself has been verified: the
//! leaf (and, with `revocation_scope = "chain"`, each intermediate up to the trust anchor) is
//! looked up by issuer name and serial in the CRLs that speak for it — a hash lookup and a
//! binary search, whatever the CRLs' size. A pending CRL (issuer not a configured CA) speaks
//! only once its signature verified against the issuing CA certificate of the chain.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::CertificateError;
use x509_parser::prelude::{DistributionPointName, FromDer, ParsedExtension, X509Certificate};

use super::crl::{LoadedCrl, uris};
use crate::config::{RevocationScope, StaleCrl, UnknownRevocation};

/// The most certificates a chain walk looks at (leaf plus intermediates).
const MAX_DEPTH: usize = 8;

/// Hears the first verification of a pending CRL against each CA key: the CRL's source, the
/// CA's subject, the outcome. Logs it and sets `certgate_crl_usable`.
pub type PendingReport =
    Arc<dyn Fn(&str, &str, &Result<(), super::pending::SignatureError>) + Send + Sync>;

/// A CRL in force and where it came from.
#[derive(Debug)]
struct Listed {
    crl: LoadedCrl,
    source: String,
}

/// Everything revocation checking needs, built once per snapshot.
pub struct Revocation {
    by_issuer: HashMap<Vec<u8>, Vec<Listed>>,
    /// Subjects (DER) of the trust anchors: a chain walk stops below them.
    anchors: Vec<Vec<u8>>,
    pub scope: RevocationScope,
    pub unknown: UnknownRevocation,
    pub stale: StaleCrl,
    report: PendingReport,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation")
            .field("by_issuer", &self.by_issuer)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A certificate's status in the CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked,
    /// No CRL in force speaks for it.
    Unknown,
    /// Not listed, but every CRL that speaks for it is past its nextUpdate.
    Stale,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    EndEntity,
    Ca,
}

impl Revocation {
    /// `crls`: (source, CRL) pairs; `report` hears pending CRLs' verifications.
    pub fn new(
        crls: impl IntoIterator<Item = (String, LoadedCrl)>,
        anchors: Vec<Vec<u8>>,
        scope: RevocationScope,
        unknown: UnknownRevocation,
        stale: StaleCrl,
        report: PendingReport,
    ) -> Self {
        let mut by_issuer: HashMap<Vec<u8>, Vec<Listed>> = HashMap::new();
        for (source, crl) in crls {
            by_issuer
                .entry(crl.issuer_der.clone())
                .or_default()
                .push(Listed { crl, source });
        }
        Self {
            by_issuer,
            anchors,
            scope,
            unknown,
            stale,
            report,
        }
    }

    /// Checks a verified chain: the leaf, then (scope `chain`) each intermediate whose subject
    /// is the previous certificate's issuer, until the issuer is a trust anchor.
    pub fn check(
        &self,
        leaf: &[u8],
        intermediates: &[&[u8]],
        now: i64,
    ) -> Result<(), CertificateError> {
        let Ok((_, mut cert)) = X509Certificate::from_der(leaf) else {
            return Err(CertificateError::BadEncoding);
        };
        let mut role = Role::EndEntity;
        for _ in 0..MAX_DEPTH {
            self.judge(self.status(&cert, role, now, intermediates))?;
            if self.scope == RevocationScope::EndEntity
                || self.anchors.iter().any(|a| a == cert.issuer().as_raw())
            {
                return Ok(());
            }
            match issuer_of(&cert, intermediates) {
                Some(c) => cert = c,
                None => return Ok(()),
            }
            role = Role::Ca;
        }
        Ok(())
    }

    fn judge(&self, status: Status) -> Result<(), CertificateError> {
        match status {
            Status::Good => Ok(()),
            Status::Revoked => Err(CertificateError::Revoked),
            Status::Unknown if self.unknown == UnknownRevocation::Deny => {
                Err(CertificateError::UnknownRevocationStatus)
            }
            Status::Stale if self.stale == StaleCrl::Deny => {
                Err(CertificateError::ExpiredRevocationList)
            }
            Status::Unknown | Status::Stale => Ok(()),
        }
    }

    /// Looks `cert` up in the CRLs of its issuer that speak for it: listed in any → revoked;
    /// none speaks for it → unknown; all of them stale → stale. A pending CRL speaks only if
    /// the issuing CA among `intermediates` signed it.
    fn status(
        &self,
        cert: &X509Certificate<'_>,
        role: Role,
        now: i64,
        intermediates: &[&[u8]],
    ) -> Status {
        let Some(crls) = self.by_issuer.get(cert.issuer().as_raw()) else {
            return Status::Unknown;
        };
        let serial = cert.raw_serial();
        let mut covered = false;
        let mut fresh = false;
        let mut issuer = None;
        for Listed { crl, source } in crls.iter().filter(|l| covers(&l.crl, cert, role)) {
            if let Some(proof) = &crl.pending {
                let ca = issuer.get_or_insert_with(|| issuer_of(cert, intermediates));
                let Some(ca) = ca else {
                    continue;
                };
                let verified = proof.verified_by(ca, |outcome| {
                    (self.report)(
                        source,
                        &crate::authn::identity::rfc4514(ca.subject()),
                        outcome,
                    )
                });
                if !verified {
                    continue;
                }
            }
            if crl.serials.contains(serial) {
                return Status::Revoked;
            }
            covered = true;
            fresh |= crl.next_update.is_none_or(|t| t > now);
        }
        match (covered, fresh) {
            (false, _) => Status::Unknown,
            (true, false) => Status::Stale,
            (true, true) => Status::Good,
        }
    }
}

/// The certificate among `intermediates` that issued `cert`: the one with the issuer's name, or
/// when a chain carries several (a cross-signed or renewed CA, or a decoy), the one whose key
/// signed `cert`.
fn issuer_of<'a>(
    cert: &X509Certificate<'_>,
    intermediates: &[&'a [u8]],
) -> Option<X509Certificate<'a>> {
    let mut named = intermediates.iter().filter_map(|der| {
        X509Certificate::from_der(der)
            .ok()
            .map(|(_, c)| c)
            .filter(|c| {
                c.subject().as_raw() == cert.issuer().as_raw() && c.as_raw() != cert.as_raw()
            })
    });
    let first = named.next()?;
    let mut rest = named.peekable();
    if rest.peek().is_none() {
        return Some(first);
    }
    std::iter::once(first)
        .chain(rest)
        .find(|c| cert.verify_signature(Some(c.public_key())).is_ok())
}

/// Whether `crl` (already known to be from the certificate's issuer) speaks for `cert`: without
/// an issuing distribution point it covers everything its issuer issued; with one, the
/// certificate's role must be in its scope, and a certificate that names CRL distribution
/// points must name one of the CRL's (as RFC 5280 §6.3.3 and webpki have it).
fn covers(crl: &LoadedCrl, cert: &X509Certificate<'_>, role: Role) -> bool {
    let Some(scope) = &crl.scope else {
        return true;
    };
    if scope.only_ca_certs && role != Role::Ca || scope.only_user_certs && role != Role::EndEntity {
        return false;
    }
    let Some(points) = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(p) => Some(p),
            _ => None,
        })
    else {
        return true;
    };
    points
        .iter()
        .filter(|p| p.crl_issuer.is_none() && p.reasons.is_none())
        .filter_map(|p| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(uris(names)),
            _ => None,
        })
        .flatten()
        .any(|uri| scope.uris.contains(&uri))
}
