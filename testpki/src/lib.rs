//! A small throwaway PKI (rcgen) for `certgate demo` and for tests: CAs, intermediates,
//! server and client leaves, CRLs. Not for production certificates.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType,
};
use time::OffsetDateTime;

pub use rcgen::{
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PKCS_RSA_SHA384,
    SerialNumber, SignatureAlgorithm,
};

pub mod jwt;

/// A certificate authority able to issue leaves, intermediates and CRLs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub der: Vec<u8>,
    serial: SerialNumber,
    crl_number: std::sync::atomic::AtomicU64,
}

/// An issued certificate with its private key.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial_hex: String,
    serial: SerialNumber,
}

impl Issued {
    /// This certificate's serial number, to revoke it in a CRL.
    pub fn serial(&self) -> SerialNumber {
        self.serial.clone()
    }
}

/// What to put in a leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub cn: String,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub emails: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    /// Offsets from now; negative `not_after` makes an expired certificate.
    pub not_before_secs: i64,
    pub not_after_secs: i64,
    pub usage: LeafUsage,
    /// CRL distribution point URIs (one distribution point naming them all).
    pub crl_distribution_points: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafUsage {
    Client,
    Server,
    /// A delegated OCSP responder (EKU id-kp-OCSPSigning).
    OcspSigning,
}

impl LeafSpec {
    /// A client certificate valid from an hour ago for 30 days.
    pub fn client(cn: &str) -> Self {
        Self {
            cn: cn.to_string(),
            o: None,
            ou: None,
            uris: Vec::new(),
            dns: Vec::new(),
            emails: Vec::new(),
            ips: Vec::new(),
            not_before_secs: -3600,
            not_after_secs: 30 * 86400,
            usage: LeafUsage::Client,
            crl_distribution_points: Vec::new(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 / ::1.
    pub fn localhost_server() -> Self {
        Self {
            dns: vec!["localhost".to_string()],
            ips: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            usage: LeafUsage::Server,
            ..Self::client("localhost")
        }
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // aws-lc's RNG only fails if the OS RNG is unavailable; fall back to time-derived bytes.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let t = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
        bytes.copy_from_slice(&t);
    }
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn offset(secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = offset(-86400);
    p.not_after = offset(3650 * 86400);
    p.serial_number = Some(random_serial());
    p
}

impl Ca {
    /// A new self-signed root CA (ECDSA P-256).
    pub fn root(cn: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let params = ca_params(cn);
        let cert = params.self_signed(&key)?;
        Ok(Self::from_parts(params, key, cert))
    }

    /// A new self-signed root CA with a key of `alg` (its certificates and CRLs are signed
    /// with it).
    pub fn root_with(cn: &str, alg: &'static SignatureAlgorithm) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(alg)?;
        let params = ca_params(cn);
        let cert = params.self_signed(&key)?;
        Ok(Self::from_parts(params, key, cert))
    }

    /// A new intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(cn);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Self::from_parts(params, key, cert))
    }

    fn from_parts(params: CertificateParams, key: KeyPair, cert: rcgen::Certificate) -> Self {
        Self {
            serial: params.serial_number.clone().unwrap_or_else(random_serial),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            crl_number: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Issues a leaf certificate.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(o) = &spec.o {
            p.distinguished_name
                .push(DnType::OrganizationName, o.as_str());
        }
        if let Some(ou) = &spec.ou {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, ou.as_str());
        }
        p.distinguished_name
            .push(DnType::CommonName, spec.cn.as_str());
        for u in &spec.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into()?));
        }
        for d in &spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into()?));
        }
        for e in &spec.emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.as_str().try_into()?));
        }
        for ip in &spec.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        p.not_before = offset(spec.not_before_secs);
        p.not_after = offset(spec.not_after_secs);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![match spec.usage {
            LeafUsage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            LeafUsage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            LeafUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
        }];
        p.use_authority_key_identifier_extension = true;
        if !spec.crl_distribution_points.is_empty() {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: spec.crl_distribution_points.clone(),
            }];
        }
        let serial = random_serial();
        p.serial_number = Some(serial.clone());
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial_hex: hex::encode(serial.to_bytes()),
            serial,
        })
    }

    /// This CA's private key (PEM), for tests that sign with other tools.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// This CA's serial number, to revoke it from its parent's CRL.
    pub fn serial(&self) -> SerialNumber {
        self.serial.clone()
    }

    /// A CRL (PEM) revoking `revoked`, valid from a minute ago for `valid_for`.
    pub fn crl(
        &self,
        revoked: &[SerialNumber],
        valid_for: Duration,
    ) -> Result<String, rcgen::Error> {
        self.crl_with_times(revoked, offset(-60), offset(valid_for.as_secs() as i64))
    }

    /// A partitioned CRL (PEM): its issuing distribution point names `uri`, and with
    /// `users_only` it speaks for end-entity certificates only.
    pub fn partitioned_crl(
        &self,
        revoked: &[SerialNumber],
        uri: &str,
        users_only: bool,
    ) -> Result<String, rcgen::Error> {
        let idp = rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: vec![uri.to_string()],
            },
            scope: users_only.then_some(rcgen::CrlScope::UserCertsOnly),
        };
        self.crl_params(revoked, offset(-60), offset(86400), Some(idp))
    }

    /// A CRL (PEM) whose nextUpdate is already in the past.
    pub fn stale_crl(&self, revoked: &[SerialNumber]) -> Result<String, rcgen::Error> {
        self.crl_with_times(revoked, offset(-7200), offset(-3600))
    }

    fn crl_with_times(
        &self,
        revoked: &[SerialNumber],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<String, rcgen::Error> {
        self.crl_params(revoked, this_update, next_update, None)
    }

    fn crl_params(
        &self,
        revoked: &[SerialNumber],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        issuing_distribution_point: Option<rcgen::CrlIssuingDistributionPoint>,
    ) -> Result<String, rcgen::Error> {
        let n = self
            .crl_number
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(n),
            issuing_distribution_point,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: c.clone(),
                    revocation_time: offset(-120),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer)?.pem()
    }
}

/// `count` distinct 16-byte serial numbers shaped like CAs issue them (a scrambled high half
/// and the index), for large-CRL tests and benchmarks.
pub fn synthetic_serials(count: u64) -> impl Iterator<Item = SerialNumber> {
    (0..count).map(|i| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).to_be_bytes());
        b[0] = (b[0] & 0x7f) | 0x10;
        b[8..].copy_from_slice(&i.to_be_bytes());
        SerialNumber::from(b.to_vec())
    })
}
