//! OCSP on the wire (RFC 6960): the request for one certificate (SHA-1 CertID, as every
//! responder understands, and a nonce), and every check a response must pass before its answer
//! is believed: successful basic response, signed by the issuer or by a responder certificate
//! the issuer delegated (id-kp-OCSPSigning, valid now), about this very certificate, current
//! (thisUpdate not in the future, nextUpdate not past), and echoing the nonce if it echoes one.

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, SingleResponse, TbsRequest, Version,
};
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

use crate::authn::revocation::crl::Signed;
use crate::authn::revocation::serials::canonical;

/// Clock skew tolerated on thisUpdate and nextUpdate.
const SKEW_SECS: i64 = 300;

/// An encoded request and what its answer must match.
pub struct Query {
    pub der: Vec<u8>,
    cert_id: CertId,
    nonce: Vec<u8>,
}

/// What the responder said about the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked,
    Unknown,
}

/// A verified answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: Status,
    /// Seconds since the epoch; `None`: the responder gave no nextUpdate.
    pub next_update: Option<i64>,
}

fn sha1(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

/// The hash of the issuer's key as a CertID and a by-key ResponderID carry it.
fn key_hash(cert: &X509Certificate<'_>) -> Vec<u8> {
    sha1(&cert.public_key().subject_public_key.data)
}

/// Why an OCSP request could not be made or a response cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    #[error("cannot encode the OCSP request: {0}")]
    Encode(der::Error),
    #[error("not an OCSP response: {0}")]
    NotOcsp(der::Error),
    #[error("responder answered {0}")]
    Status(String),
    #[error("unsupported response type {0}")]
    ResponseType(String),
    #[error("malformed basic response: {0}")]
    Malformed(String),
    /// Who should have signed, and why the signature does not verify.
    #[error("bad signature by {0}: {1}")]
    BadSignature(&'static str, x509_parser::error::X509Error),
    #[error("unreadable issuer certificate: {0}")]
    Issuer(String),
    #[error("{0}")]
    Invalid(&'static str),
}

/// The request for the certificate with `serial` (DER INTEGER content) issued by `issuer`.
pub fn request(issuer: &X509Certificate<'_>, serial: &[u8]) -> Result<Query, OcspError> {
    let bad = OcspError::Encode;
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(sha1(issuer.subject().as_raw())).map_err(bad)?,
        issuer_key_hash: OctetString::new(key_hash(issuer)).map_err(bad)?,
        // As signed (two's complement), not read as unsigned: a negative serial stays negative.
        serial_number: der::asn1::Int::new(canonical(serial))
            .and_then(|i| i.to_der())
            .and_then(|d| SerialNumber::from_der(&d))
            .map_err(bad)?,
    };
    let mut nonce = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| OcspError::Invalid("no randomness for the OCSP nonce"))?;
    let nonce_ext = Extension {
        extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(
            Nonce::new(nonce.clone())
                .and_then(|n| n.to_der())
                .map_err(bad)?,
        )
        .map_err(bad)?,
    };
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![nonce_ext]),
        },
        optional_signature: None,
    };
    Ok(Query {
        der: req.to_der().map_err(bad)?,
        cert_id,
        nonce,
    })
}

/// Checks a response to `query` about a certificate of `issuer`, at `now`.
pub fn read_response(
    body: &[u8],
    query: &Query,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<Answer, OcspError> {
    let resp = OcspResponse::from_der(body).map_err(OcspError::NotOcsp)?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::Status(format!("{:?}", resp.response_status)));
    }
    let bytes = resp
        .response_bytes
        .ok_or(OcspError::Invalid("successful response without a body"))?;
    if bytes.response_type != const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC {
        return Err(OcspError::ResponseType(bytes.response_type.to_string()));
    }
    let raw = bytes.response.as_bytes();
    let basic =
        BasicOcspResponse::from_der(raw).map_err(|e| OcspError::Malformed(e.to_string()))?;
    let signed = Signed::split(raw).map_err(|e| OcspError::Malformed(e.to_string()))?;
    check_signature(&basic, &signed, issuer, now)?;
    let data = &basic.tbs_response_data;
    let single = data
        .responses
        .iter()
        .find(|r| same_cert(&r.cert_id, &query.cert_id))
        .ok_or(OcspError::Invalid(
            "the response is about another certificate",
        ))?;
    if let Some(echoed) = data.nonce()
        && echoed.0.as_bytes() != query.nonce.as_slice()
    {
        return Err(OcspError::Invalid(
            "the response's nonce is not the request's (replayed?)",
        ));
    }
    answer(single, now)
}

fn same_cert(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && canonical(a.serial_number.as_bytes()) == canonical(b.serial_number.as_bytes())
}

fn secs(t: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    t.0.to_unix_duration().as_secs() as i64
}

fn answer(single: &SingleResponse, now: i64) -> Result<Answer, OcspError> {
    if secs(&single.this_update) > now + SKEW_SECS {
        return Err(OcspError::Invalid(
            "the response's thisUpdate is in the future",
        ));
    }
    let next_update = single.next_update.as_ref().map(secs);
    if next_update.is_some_and(|t| t < now - SKEW_SECS) {
        return Err(OcspError::Invalid("the response is past its nextUpdate"));
    }
    let status = match single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(_) => Status::Revoked,
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Answer {
        status,
        next_update,
    })
}

/// The response is signed by the issuer, or by a certificate in it that the issuer delegated
/// OCSP signing to.
fn check_signature(
    basic: &BasicOcspResponse,
    signed: &Signed<'_>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<(), OcspError> {
    let id = &basic.tbs_response_data.responder_id;
    if names(id, issuer) {
        return signed
            .verify(issuer.public_key())
            .map_err(|e| OcspError::BadSignature("the issuer", e));
    }
    let included: Vec<Vec<u8>> = basic
        .certs
        .iter()
        .flatten()
        .filter_map(|c| c.to_der().ok())
        .collect();
    let responder = included
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .find(|c| names(id, c))
        .ok_or(OcspError::Invalid(
            "signed by a responder that is neither the issuer nor in the response",
        ))?;
    delegated(&responder, issuer, now)?;
    signed
        .verify(responder.public_key())
        .map_err(|e| OcspError::BadSignature("the delegated responder", e))
}

/// Whether the ResponderID names `cert`.
fn names(id: &ResponderId, cert: &X509Certificate<'_>) -> bool {
    match id {
        ResponderId::ByName(name) => name
            .to_der()
            .is_ok_and(|der| der.as_slice() == cert.subject().as_raw()),
        ResponderId::ByKey(hash) => hash.as_bytes() == key_hash(cert).as_slice(),
    }
}

/// A delegated responder: issued (signed) by the issuer, for OCSP signing, valid now.
fn delegated(
    responder: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<(), OcspError> {
    if responder.issuer().as_raw() != issuer.subject().as_raw()
        || responder
            .verify_signature(Some(issuer.public_key()))
            .is_err()
    {
        return Err(OcspError::Invalid(
            "the responder certificate is not issued by the certificate's issuer",
        ));
    }
    let ocsp_signing =
        matches!(responder.extended_key_usage(), Ok(Some(eku)) if eku.value.ocsp_signing);
    if !ocsp_signing {
        return Err(OcspError::Invalid(
            "the responder certificate lacks id-kp-OCSPSigning",
        ));
    }
    let valid = ASN1Time::from_timestamp(now).is_ok_and(|t| responder.validity().is_valid_at(t));
    if !valid {
        return Err(OcspError::Invalid(
            "the responder certificate is not valid now",
        ));
    }
    Ok(())
}
