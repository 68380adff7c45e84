//! CRL parsing and verification against a real CA (the NIST PKITS trust anchor), and serial
//! lookups in whatever it yields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

static ANCHOR: &[u8] = include_bytes!("../../tests/data/pkits/TrustAnchorRootCertificate.crt");

fuzz_target!(|data: &[u8]| {
    let cas = [CertificateDer::from(ANCHOR)];
    if let Ok(crls) = certgate::authn::revocation::crl::parse_crls(data, &cas) {
        for c in crls {
            let _ = c.serials.contains(&[1]);
            let _ = c.serials.contains(data.get(..20).unwrap_or(data));
        }
    }
});
