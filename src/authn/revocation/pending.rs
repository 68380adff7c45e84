//! CRLs whose issuer is not a configured CA ("pending"): the usual shape of a PKI where the
//! trust store holds the root and clients present their intermediate. Such a CRL is parsed and
//! checked at load like any other, but its signature can only be verified against the CA
//! certificate a client presents with the CRL's issuer name. [`CrlProof`] keeps what that needs
//! — the digest of the signed bytes, not the bytes (a million-entry CRL's are 35 MB) — and
//! [`CrlProof::verified_by`] verifies it once per CA key and answers later handshakes from the
//! cache, without a lock.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384,
    OID_NIST_HASH_SHA512, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::X509Certificate;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::crl::Signed;

/// The most CA keys whose verdict a pending CRL remembers. Only keys of CA certificates in
/// verified chains get here, so this is never reached in practice; past it, verdicts are
/// computed (one signature check, no hashing) but not kept.
const MAX_VERDICTS: usize = 64;

/// A CRL's signature, kept so that it can be checked against a CA key found later.
pub struct CrlProof {
    scheme: Scheme,
    /// What the signature is over: its digest, or (Ed25519, which signs the message itself)
    /// the signed bytes.
    message: Message,
    signature: Box<[u8]>,
    /// Verdicts per CA key (its subjectPublicKeyInfo), read lock-free by handshakes.
    verdicts: ArcSwap<Vec<Verdict>>,
    /// Held while verifying, so each key is verified once.
    verifying: Mutex<()>,
}

struct Verdict {
    spki: Box<[u8]>,
    outcome: Result<(), SignatureError>,
}

/// Why a CRL's signature is not accepted from a CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unsupported signature algorithm {0}")]
    Algorithm(String),
    #[error("unsupported RSASSA-PSS parameters ({0})")]
    PssParameters(String),
    #[error("the CA's key cannot make this kind of signature")]
    KeyKind,
    #[error("bad signature")]
    Bad,
    #[error("its issuer {0} may not sign CRLs (keyUsage without cRLSign)")]
    NoCrlSign(String),
    /// The key of the CA named `ca` did not make the signature, for `cause`.
    #[error("{cause} (not signed by {ca})")]
    NotSignedBy {
        cause: Box<SignatureError>,
        ca: String,
    },
}

#[derive(Clone, Copy)]
enum Scheme {
    RsaPkcs1,
    RsaPss,
    Ecdsa,
    Ed25519,
}

enum Message {
    Digest(Digest),
    Whole(Box<[u8]>),
}

impl std::fmt::Debug for CrlProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlProof")
            .field("verdicts", &self.verdicts.load().len())
            .finish_non_exhaustive()
    }
}

impl CrlProof {
    /// Reads the signature algorithm and digests the signed bytes. An algorithm certgate
    /// cannot verify makes the CRL unusable.
    pub(super) fn new(signed: &Signed<'_>) -> Result<Self, SignatureError> {
        let oid = &signed.alg.algorithm;
        let (scheme, hash): (Scheme, Option<&'static digest::Algorithm>) =
            if *oid == OID_PKCS1_SHA1WITHRSA || *oid == OID_SHA1_WITH_RSA {
                (Scheme::RsaPkcs1, Some(&digest::SHA1_FOR_LEGACY_USE_ONLY))
            } else if *oid == OID_PKCS1_SHA256WITHRSA {
                (Scheme::RsaPkcs1, Some(&digest::SHA256))
            } else if *oid == OID_PKCS1_SHA384WITHRSA {
                (Scheme::RsaPkcs1, Some(&digest::SHA384))
            } else if *oid == OID_PKCS1_SHA512WITHRSA {
                (Scheme::RsaPkcs1, Some(&digest::SHA512))
            } else if *oid == OID_PKCS1_RSASSAPSS {
                (Scheme::RsaPss, pss_hash(signed))
            } else if *oid == OID_SIG_ECDSA_WITH_SHA256 {
                (Scheme::Ecdsa, Some(&digest::SHA256))
            } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
                (Scheme::Ecdsa, Some(&digest::SHA384))
            } else if *oid == OID_SIG_ECDSA_WITH_SHA512 {
                (Scheme::Ecdsa, Some(&digest::SHA512))
            } else if *oid == OID_SIG_ED25519 {
                (Scheme::Ed25519, None)
            } else {
                return Err(SignatureError::Algorithm(oid.to_string()));
            };
        let message = match scheme {
            Scheme::Ed25519 => Message::Whole(signed.tbs.into()),
            _ => Message::Digest(digest::digest(
                hash.ok_or_else(|| SignatureError::PssParameters(oid.to_string()))?,
                signed.tbs,
            )),
        };
        Ok(Self {
            scheme,
            message,
            signature: signed.sig.data.as_ref().into(),
            verdicts: ArcSwap::from_pointee(Vec::new()),
            verifying: Mutex::new(()),
        })
    }

    /// Whether the key `spki` made the signature (and is of a kind that could have).
    pub fn verify(&self, spki: &SubjectPublicKeyInfo<'_>) -> Result<(), SignatureError> {
        let alg = self.algorithm(spki).ok_or(SignatureError::KeyKind)?;
        let key = UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref());
        match &self.message {
            Message::Digest(d) => key.verify_digest(d, &self.signature),
            Message::Whole(m) => key.verify(m, &self.signature),
        }
        .map_err(|_| SignatureError::Bad)
    }

    fn algorithm(
        &self,
        spki: &SubjectPublicKeyInfo<'_>,
    ) -> Option<&'static dyn VerificationAlgorithm> {
        let hash = match &self.message {
            Message::Digest(d) => d.algorithm(),
            Message::Whole(_) => return Some(&sig::ED25519),
        };
        let is = |h: &digest::Algorithm| hash == h;
        Some(match self.scheme {
            Scheme::RsaPkcs1 if is(&digest::SHA1_FOR_LEGACY_USE_ONLY) => {
                &sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            Scheme::RsaPkcs1 if is(&digest::SHA256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            Scheme::RsaPkcs1 if is(&digest::SHA384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            Scheme::RsaPkcs1 if is(&digest::SHA512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            Scheme::RsaPss if is(&digest::SHA256) => &sig::RSA_PSS_2048_8192_SHA256,
            Scheme::RsaPss if is(&digest::SHA384) => &sig::RSA_PSS_2048_8192_SHA384,
            Scheme::RsaPss if is(&digest::SHA512) => &sig::RSA_PSS_2048_8192_SHA512,
            Scheme::Ecdsa => {
                let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
                match () {
                    _ if curve == OID_EC_P256 && is(&digest::SHA256) => {
                        &sig::ECDSA_P256_SHA256_ASN1
                    }
                    _ if curve == OID_EC_P256 && is(&digest::SHA384) => {
                        &sig::ECDSA_P256_SHA384_ASN1
                    }
                    _ if curve == OID_NIST_EC_P384 && is(&digest::SHA256) => {
                        &sig::ECDSA_P384_SHA256_ASN1
                    }
                    _ if curve == OID_NIST_EC_P384 && is(&digest::SHA384) => {
                        &sig::ECDSA_P384_SHA384_ASN1
                    }
                    _ if curve == OID_NIST_EC_P521 && is(&digest::SHA512) => {
                        &sig::ECDSA_P521_SHA512_ASN1
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// Whether `ca` — a CA certificate of a verified chain, named as this CRL's issuer — may
    /// sign CRLs and signed this one. Verified the first time a key is seen (`first` hears the
    /// outcome, to log and count it once), then answered from the cache.
    pub fn verified_by(
        &self,
        ca: &X509Certificate<'_>,
        first: impl FnOnce(&Result<(), SignatureError>),
    ) -> bool {
        let spki = ca.public_key().raw;
        if let Some(v) = self.verdicts.load().iter().find(|v| &*v.spki == spki) {
            return v.outcome.is_ok();
        }
        let _one = self.verifying.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.verdicts.load().iter().find(|v| &*v.spki == spki) {
            return v.outcome.is_ok();
        }
        let outcome = self.check(ca);
        let ok = outcome.is_ok();
        first(&outcome);
        if self.verdicts.load().len() < MAX_VERDICTS {
            self.verdicts.rcu(|old| {
                let mut new: Vec<Verdict> = old
                    .iter()
                    .map(|v| Verdict {
                        spki: v.spki.clone(),
                        outcome: v.outcome.clone(),
                    })
                    .collect();
                new.push(Verdict {
                    spki: spki.into(),
                    outcome: outcome.clone(),
                });
                Arc::new(new)
            });
        }
        ok
    }

    /// Whether `ca` may sign CRLs (cRLSign in its keyUsage, RFC 5280 §4.2.1.3) and signed this
    /// one.
    pub fn check(&self, ca: &X509Certificate<'_>) -> Result<(), SignatureError> {
        let name = || crate::authn::identity::rfc4514(ca.subject());
        if let Ok(Some(ku)) = ca.key_usage()
            && !ku.value.crl_sign()
        {
            return Err(SignatureError::NoCrlSign(name()));
        }
        self.verify(ca.public_key())
            .map_err(|e| SignatureError::NotSignedBy {
                cause: Box::new(e),
                ca: name(),
            })
    }

    /// Whether a CA key of a verified chain signed it (then it is in force for that CA).
    pub fn verified_any(&self) -> bool {
        self.verdicts.load().iter().any(|v| v.outcome.is_ok())
    }

    /// Whether a CA key this CRL was checked against did not sign it.
    pub fn failed_any(&self) -> bool {
        self.verdicts.load().iter().any(|v| v.outcome.is_err())
    }
}

fn pss_hash(signed: &Signed<'_>) -> Option<&'static digest::Algorithm> {
    let params = RsaSsaPssParams::try_from(signed.alg.parameters.as_ref()?).ok()?;
    let hash = params.hash_algorithm_oid();
    if *hash == OID_NIST_HASH_SHA256 {
        Some(&digest::SHA256)
    } else if *hash == OID_NIST_HASH_SHA384 {
        Some(&digest::SHA384)
    } else if *hash == OID_NIST_HASH_SHA512 {
        Some(&digest::SHA512)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use certgate_testpki::{
        Ca, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
        PKCS_RSA_SHA384, SignatureAlgorithm,
    };
    use x509_parser::prelude::{FromDer, X509Certificate};

    use crate::authn::revocation::crl::parse_crls;

    fn proof_of(ca: &Ca) -> std::sync::Arc<super::CrlProof> {
        let pem = ca.crl(&[], Duration::from_secs(3600)).unwrap();
        let crls = parse_crls(pem.as_bytes(), &[]).expect("usable, pending");
        crls[0].pending.clone().expect("pending: no configured CA")
    }

    #[test]
    fn pending_crls_verify_against_their_ca_for_every_key_kind() {
        let algs: [&'static SignatureAlgorithm; 5] = [
            &PKCS_ECDSA_P256_SHA256,
            &PKCS_ECDSA_P384_SHA384,
            &PKCS_ED25519,
            &PKCS_RSA_SHA256,
            &PKCS_RSA_SHA384,
        ];
        for alg in algs {
            let ca = Ca::root_with("Same Name", alg).unwrap();
            let twin = Ca::root_with("Same Name", alg).unwrap();
            let proof = proof_of(&ca);
            let (_, ca_cert) = X509Certificate::from_der(&ca.der).unwrap();
            let (_, twin_cert) = X509Certificate::from_der(&twin.der).unwrap();
            assert_eq!(proof.check(&ca_cert), Ok(()), "{alg:?}");
            let err = proof.check(&twin_cert).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("bad signature (not signed by CN=Same Name)"),
                "{alg:?}: {err}"
            );
        }
    }

    #[test]
    fn each_key_is_verified_once_and_a_failure_is_remembered() {
        let ca = Ca::root("Issuing").unwrap();
        let twin = Ca::root("Issuing").unwrap();
        let proof = proof_of(&ca);
        let (_, ca_cert) = X509Certificate::from_der(&ca.der).unwrap();
        let (_, twin_cert) = X509Certificate::from_der(&twin.der).unwrap();
        let mut heard = Vec::new();
        for _ in 0..3 {
            assert!(proof.verified_by(&ca_cert, |o| heard.push(o.is_ok())));
            assert!(!proof.verified_by(&twin_cert, |o| heard.push(o.is_ok())));
        }
        assert_eq!(heard, [true, false], "one verification per key");
        assert!(proof.failed_any());
    }
}
