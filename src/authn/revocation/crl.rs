//! CRLs: loaded, checked and verified once, when they are read — never again per handshake. A
//! CRL the verifier would reject, or one that is not provably from a trusted CA (issuer
//! unknown, issuer without cRLSign, bad signature), is *unusable*: reported and left out, so it
//! cannot take the other CAs down with it; its CA's clients are then revocation-unknown. A
//! usable CRL keeps only what lookups need: its issuer, dates, scope and a compact sorted set of
//! revoked serials ([`SerialSet`]); [`super::check::Revocation`] looks certificates up in them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::asn1_rs::{Any, BitString, Class, Tag};
use x509_parser::prelude::{
    ASN1Time, AlgorithmIdentifier, DistributionPointName, FromDer, GeneralName,
    IssuingDistributionPoint, ParsedExtension, X509Certificate, X509Extension, X509Name,
};

use super::pending::{CrlProof, SignatureError};
use super::serials::{SerialSet, canonical};
use crate::util::pem::read;

/// A verified CRL: what revocation lookups and `check` need, without the DER.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    pub issuer: String,
    /// The issuer's name as DER, to match certificates issued by it.
    pub issuer_der: Vec<u8>,
    /// Seconds since the epoch.
    pub this_update: i64,
    /// Seconds since the epoch; `None` when the CRL has no nextUpdate.
    pub next_update: Option<i64>,
    pub revoked_count: usize,
    /// The issuing distribution point: which certificates this CRL speaks for.
    pub scope: Option<CrlScope>,
    pub serials: Arc<SerialSet>,
    /// Set when the issuer is not a configured CA: the signature, to be verified against the
    /// CA certificate with the issuer's name that a verified chain presents
    /// ([`super::pending`]). Until then the CRL is not used.
    pub pending: Option<Arc<CrlProof>>,
}

/// A CRL's issuingDistributionPoint (RFC 5280 §5.2.5), as far as it limits the CRL's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlScope {
    pub only_user_certs: bool,
    pub only_ca_certs: bool,
    /// The distribution point's URIs: a certificate that names CRL distribution points is
    /// covered only if one of them is among these.
    pub uris: Vec<String>,
}

/// Why a CRL cannot be used, and whose CRL it was when that could be read.
#[derive(Debug, Clone)]
pub struct Unusable {
    pub issuer_der: Option<Vec<u8>>,
    pub why: String,
}

impl Unusable {
    fn new(issuer_der: Option<&[u8]>, why: impl Into<String>) -> Self {
        Self {
            issuer_der: issuer_der.map(<[u8]>::to_vec),
            why: why.into(),
        }
    }
}

/// Reads and verifies the CRLs of a file (PEM `X509 CRL` blocks or one DER CRL) against the CAs
/// `cas` (trust anchors and intermediates). The outer error is a file that cannot be read (a
/// config error); the inner one the first unusable CRL in it.
pub fn load_crls(
    path: &Path,
    cas: &[CertificateDer<'_>],
) -> Result<Result<Vec<LoadedCrl>, Unusable>, crate::util::pem::LoadError> {
    let bytes = read(path)?;
    Ok(parse_crls(&bytes, cas))
}

/// Verifies the CRLs in `bytes` (PEM `X509 CRL` blocks or one DER CRL) against `cas`.
pub fn parse_crls(bytes: &[u8], cas: &[CertificateDer<'_>]) -> Result<Vec<LoadedCrl>, Unusable> {
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| Unusable::new(None, format!("invalid PEM: {e}")))?;
    if pem.is_empty() {
        return Ok(vec![verify(bytes, cas)?]);
    }
    pem.iter().map(|der| verify(der.as_ref(), cas)).collect()
}

/// Checks one DER CRL and keeps what lookups need.
fn verify(der: &[u8], cas: &[CertificateDer<'_>]) -> Result<LoadedCrl, Unusable> {
    let head = Header::parse(der).map_err(|why| Unusable::new(None, why))?;
    let issuer_der = head.issuer.as_raw();
    let issuer = crate::authn::identity::rfc4514(&head.issuer);
    let unusable = |why: String| Unusable::new(Some(issuer_der), why);
    // What the verifier itself refuses: unknown critical extensions, delta CRLs, v1 CRLs, …
    let list = webpki::BorrowedCertRevocationList::from_der(der)
        .map_err(|e| unusable(format!("rejected by the verifier: {}", in_words(&e))))?;
    let proof = CrlProof::new(&head.signed).map_err(|e| unusable(e.to_string()))?;
    let pending = check_signature(&head, &proof, cas).map_err(|e| unusable(e.to_string()))?;
    // Every entry must be well formed (and carry no unknown critical extension).
    let mut width = 0;
    let mut count = 0;
    for entry in &list {
        let entry = entry
            .map_err(|e| unusable(format!("bad revoked-certificate entry: {}", in_words(&e))))?;
        width = width.max(canonical(entry.serial_number).len());
        count += 1;
    }
    let serials = SerialSet::build(
        (&list)
            .into_iter()
            .filter_map(Result::ok)
            .map(|e| e.serial_number),
        width,
    );
    Ok(LoadedCrl {
        issuer,
        issuer_der: issuer_der.to_vec(),
        this_update: head.this_update,
        next_update: head.next_update,
        revoked_count: count,
        scope: head.scope,
        serials: Arc::new(serials),
        pending: pending.then(|| Arc::new(proof)),
    })
}

/// What the verifier refuses in a CRL, in words (its own texts are variant names, some with
/// OIDs as byte arrays).
fn in_words(e: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match e {
        E::UnsupportedCriticalExtension => "an unknown critical extension",
        E::UnsupportedCrlVersion => "not a version 2 CRL",
        E::UnsupportedDeltaCrl => "a delta CRL (not supported)",
        E::UnsupportedIndirectCrl => "an indirect CRL (not supported)",
        E::UnsupportedCrlIssuingDistributionPoint => "an issuing distribution point it cannot read",
        E::UnsupportedRevocationReason => "an unknown revocation reason",
        E::UnsupportedRevocationReasonsPartitioning => {
            "a CRL partitioned by reason (not supported)"
        }
        E::InvalidCrlNumber => "an invalid CRL number",
        E::InvalidSerialNumber => "an invalid serial number",
        E::MalformedExtensions | E::ExtensionValueInvalid => "a malformed extension",
        E::BadDerTime => "a malformed date",
        E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmContext(_) => "an unsupported signature algorithm",
        _ => "malformed DER",
    }
}

/// When the CRL's issuer is one of `cas`: it may sign CRLs and signed this one (`Ok(false)`).
/// When no configured CA has the issuer's name: `Ok(true)`, the CRL is pending.
fn check_signature(
    head: &Header<'_>,
    proof: &CrlProof,
    cas: &[CertificateDer<'_>],
) -> Result<bool, SignatureError> {
    let issuers: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, c)| c))
        .filter(|c| c.subject().as_raw() == head.issuer.as_raw())
        .collect();
    if issuers.is_empty() {
        return Ok(true);
    }
    let mut why = SignatureError::Bad;
    for ca in &issuers {
        match proof.check(ca) {
            Ok(()) => return Ok(false),
            Err(e) => why = e,
        }
    }
    Err(why)
}

/// DER that is not `SEQUENCE { tbs, signatureAlgorithm, signature, … }`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("not a signed structure (truncated or malformed DER)")]
pub struct MalformedDer;

/// A signed ASN.1 structure (`SEQUENCE { tbs, signatureAlgorithm, signature, … }`: a CRL, a
/// certificate, a basic OCSP response) split without decoding what was signed.
pub(crate) struct Signed<'a> {
    /// The signed bytes, with their tag and length.
    pub tbs: &'a [u8],
    /// What is inside them.
    pub content: &'a [u8],
    pub alg: AlgorithmIdentifier<'a>,
    pub sig: BitString<'a>,
}

impl<'a> Signed<'a> {
    pub fn split(der: &'a [u8]) -> Result<Self, MalformedDer> {
        fn bad<E>(_: E) -> MalformedDer {
            MalformedDer
        }
        let (_, outer) = Any::from_der(der).map_err(bad)?;
        let (rest, tbs) = Any::from_der(outer.data).map_err(bad)?;
        let signed = &outer.data[..outer.data.len() - rest.len()];
        let (rest, alg) = AlgorithmIdentifier::from_der(rest).map_err(bad)?;
        let (_, sig) = BitString::from_der(rest).map_err(bad)?;
        Ok(Self {
            tbs: signed,
            content: tbs.data,
            alg,
            sig,
        })
    }

    /// Whether the key `spki` made the signature.
    pub fn verify(
        &self,
        spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    ) -> Result<(), x509_parser::error::X509Error> {
        x509_parser::verify::verify_signature(spki, &self.alg, &self.sig, self.tbs)
    }
}

/// The parts of a CRL read without walking its revoked-certificate list.
struct Header<'a> {
    signed: Signed<'a>,
    issuer: X509Name<'a>,
    this_update: i64,
    next_update: Option<i64>,
    scope: Option<CrlScope>,
}

impl<'a> Header<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, String> {
        fn bad<E>(_: E) -> String {
            "not a CRL (a PEM X509 CRL block or one DER CRL expected; this one is truncated or malformed)".to_string()
        }
        let signed = Signed::split(der).map_err(bad)?;
        let (i, _version) = Option::<u32>::from_der(signed.content).map_err(bad)?;
        let (i, _) = AlgorithmIdentifier::from_der(i).map_err(bad)?;
        let (i, issuer) = X509Name::from_der(i).map_err(bad)?;
        let (i, this_update) = ASN1Time::from_der(i).map_err(bad)?;
        let (mut i, next_update) = match ASN1Time::from_der(i) {
            Ok((i, t)) => (i, Some(t.timestamp())),
            Err(_) => (i, None),
        };
        // The rest: the revoked certificates (SEQUENCE, skipped here) and [0] extensions.
        let mut scope = None;
        while !i.is_empty() {
            let (r, item) = Any::from_der(i).map_err(bad)?;
            i = r;
            if item.class() == Class::ContextSpecific && item.tag() == Tag(0) {
                let (_, exts) = Any::from_der(item.data).map_err(bad)?;
                let mut e = exts.data;
                while !e.is_empty() {
                    let (r, ext) = X509Extension::from_der(e).map_err(bad)?;
                    e = r;
                    if let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() {
                        scope = Some(CrlScope::from(idp));
                    }
                }
            }
        }
        Ok(Self {
            signed,
            issuer,
            this_update: this_update.timestamp(),
            next_update,
            scope,
        })
    }
}

impl From<&IssuingDistributionPoint<'_>> for CrlScope {
    fn from(idp: &IssuingDistributionPoint<'_>) -> Self {
        Self {
            only_user_certs: idp.only_contains_user_certs,
            only_ca_certs: idp.only_contains_ca_certs,
            uris: match &idp.distribution_point {
                Some(DistributionPointName::FullName(names)) => uris(names),
                _ => Vec::new(),
            },
        }
    }
}

/// The URIs among general names.
pub(crate) fn uris(names: &[GeneralName<'_>]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}
