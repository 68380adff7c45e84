//! Revocation lookups against the loaded CRLs, after the chain itself has been verified: the
//! leaf (and, with `revocation_scope = "chain"`, each intermediate up to the trust anchor) is
//! looked up by issuer name and serial in the CRLs that speak for it — a hash lookup and a
//! binary search, whatever the CRLs' size.

use std::collections::HashMap;

use rustls::CertificateError;
use x509_parser::prelude::{DistributionPointName, FromDer, ParsedExtension, X509Certificate};

use super::crl::{LoadedCrl, uris};
use crate::config::{RevocationScope, StaleCrl, UnknownRevocation};

/// The most certificates a chain walk looks at (leaf plus intermediates).
const MAX_DEPTH: usize = 8;

/// Everything revocation checking needs, built once per snapshot.
#[derive(Debug)]
pub struct Revocation {
    by_issuer: HashMap<Vec<u8>, Vec<LoadedCrl>>,
    /// Subjects (DER) of the trust anchors: a chain walk stops below them.
    anchors: Vec<Vec<u8>>,
    pub scope: RevocationScope,
    pub unknown: UnknownRevocation,
    pub stale: StaleCrl,
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
    pub fn new(
        crls: impl IntoIterator<Item = LoadedCrl>,
        anchors: Vec<Vec<u8>>,
        scope: RevocationScope,
        unknown: UnknownRevocation,
        stale: StaleCrl,
    ) -> Self {
        let mut by_issuer: HashMap<Vec<u8>, Vec<LoadedCrl>> = HashMap::new();
        for crl in crls {
            by_issuer
                .entry(crl.issuer_der.clone())
                .or_default()
                .push(crl);
        }
        Self {
            by_issuer,
            anchors,
            scope,
            unknown,
            stale,
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
            self.judge(self.status(&cert, role, now))?;
            if self.scope == RevocationScope::EndEntity
                || self.anchors.iter().any(|a| a == cert.issuer().as_raw())
            {
                return Ok(());
            }
            let issuer = cert.issuer().as_raw();
            let next = intermediates.iter().find_map(|der| {
                X509Certificate::from_der(der)
                    .ok()
                    .map(|(_, c)| c)
                    .filter(|c| c.subject().as_raw() == issuer && c.as_raw() != cert.as_raw())
            });
            match next {
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
    /// none speaks for it → unknown; all of them stale → stale.
    fn status(&self, cert: &X509Certificate<'_>, role: Role, now: i64) -> Status {
        let Some(crls) = self.by_issuer.get(cert.issuer().as_raw()) else {
            return Status::Unknown;
        };
        let serial = cert.raw_serial();
        let mut covered = false;
        let mut fresh = false;
        for crl in crls.iter().filter(|c| covers(c, cert, role)) {
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
