//! [`ClientIdentity`]: what certgate knows about a verified client, extracted once per connection.

use rustls::pki_types::CertificateDer;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The identity carried by a verified client leaf certificate. Shared by policy, headers and logs.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Subject as an RFC 4514 string (most specific RDN first), e.g. `CN=app,O=Example`.
    pub subject: String,
    pub common_names: Vec<String>,
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    pub issuer_common_names: Vec<String>,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the certificate DER.
    pub sha256: [u8; 32],
    pub sha256_hex: String,
    /// The certificate itself, to verify it again after a reload.
    pub der: CertificateDer<'static>,
}

#[derive(Debug, thiserror::Error)]
#[error("certificate cannot be parsed: {0}")]
pub struct IdentityError(String);

/// Identities of certificates that have open connections, shared between those connections:
/// a client that opens many connections with one certificate is parsed once and held once.
#[derive(Default)]
pub struct IdentityCache {
    live: dashmap::DashMap<[u8; 32], std::sync::Weak<ClientIdentity>>,
}

impl IdentityCache {
    /// Entries past which dead ones are swept (at each doubling), bounding the map.
    const SWEEP_FROM: usize = 4096;

    /// The identity of a verified leaf, parsed only if no open connection already holds it.
    pub fn get_or_parse(
        &self,
        der: &[u8],
    ) -> Result<std::sync::Arc<ClientIdentity>, IdentityError> {
        let key = crate::util::digest::sha256(der);
        if let Some(id) = self.live.get(&key).and_then(|w| w.upgrade()) {
            return Ok(id);
        }
        let id = std::sync::Arc::new(ClientIdentity::from_der(der)?);
        self.live.insert(key, std::sync::Arc::downgrade(&id));
        let n = self.live.len();
        if n >= Self::SWEEP_FROM && n.is_power_of_two() {
            self.live.retain(|_, w| w.strong_count() > 0);
        }
        Ok(id)
    }
}

impl ClientIdentity {
    /// Extracts the identity from a DER certificate. Does not verify anything: call it only on a
    /// certificate the TLS verifier accepted (or, in `explain`, to describe one).
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError(e.to_string()))?;
        let subject_name = cert.subject();
        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        let mut emails = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_string()),
                    GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                    GeneralName::RFC822Name(e) => emails.push((*e).to_string()),
                    _ => {}
                }
            }
        }
        let sha256 = crate::util::digest::sha256(der);
        let sha256_hex = hex::encode(sha256);
        let subject = rfc4514(subject_name);
        Ok(Self {
            der: CertificateDer::from(der.to_vec()),
            common_names: strings(subject_name.iter_common_name()),
            organizations: strings(subject_name.iter_organization()),
            organizational_units: strings(subject_name.iter_organizational_unit()),
            issuer: rfc4514(cert.issuer()),
            issuer_common_names: strings(cert.issuer().iter_common_name()),
            subject,
            uris,
            dns_names,
            emails,
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256,
            sha256_hex,
        })
    }
}

fn strings<'a, 'b: 'a>(
    it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Vec<String> {
    it.filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect()
}

fn attr_short_name(oid: &Oid<'_>) -> Option<&'static str> {
    Some(match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 string form of a distinguished name: RDNs in reverse order, `+` inside a
/// multi-valued RDN, special characters escaped, unknown or non-string values as `OID=#hex`.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type();
            let short = attr_short_name(oid);
            match short {
                Some(s) => out.push_str(s),
                None => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            match (short, atv.as_str()) {
                (Some(_), Ok(v)) => escape_rfc4514_value(&mut out, v),
                _ => {
                    out.push('#');
                    out.push_str(&hex::encode(atv.attr_value().data));
                }
            }
        }
    }
    out
}

fn escape_rfc4514_value(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_testpki::{Ca, LeafSpec};

    #[test]
    fn extracts_fields() {
        let ca = Ca::root("Test Root").unwrap();
        let leaf = ca
            .issue(&LeafSpec {
                cn: "billing, reader".into(),
                o: Some("Example".into()),
                ou: Some("finance".into()),
                uris: vec!["spiffe://example.org/ns/billing/sa/reader".into()],
                dns: vec!["reader.example.org".into()],
                emails: vec!["ops@example.org".into()],
                ..LeafSpec::client("x")
            })
            .unwrap();
        let id = ClientIdentity::from_der(&leaf.der).unwrap();
        assert_eq!(id.common_names, ["billing, reader"]);
        assert_eq!(id.organizations, ["Example"]);
        assert_eq!(id.organizational_units, ["finance"]);
        assert_eq!(id.issuer_common_names, ["Test Root"]);
        assert_eq!(id.subject, r"CN=billing\, reader,OU=finance,O=Example");
        assert_eq!(id.uris, ["spiffe://example.org/ns/billing/sa/reader"]);
        assert_eq!(id.dns_names, ["reader.example.org"]);
        assert_eq!(id.emails, ["ops@example.org"]);
        assert_eq!(id.serial, leaf.serial_hex);
        let expect_hash = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &leaf.der,
        ));
        assert_eq!(id.sha256_hex, expect_hash);
    }

    #[test]
    fn cache_shares_live_identities_only() {
        let ca = Ca::root("Test Root").unwrap();
        let leaf = ca.issue(&LeafSpec::client("shared")).unwrap();
        let cache = IdentityCache::default();
        let a = cache.get_or_parse(&leaf.der).unwrap();
        let b = cache.get_or_parse(&leaf.der).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = cache.get_or_parse(&leaf.der).unwrap();
        assert_eq!(c.common_names, ["shared"]);
        assert!(cache.get_or_parse(b"junk").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ClientIdentity::from_der(b"not a certificate").is_err());
        assert!(ClientIdentity::from_der(&[]).is_err());
    }
}
