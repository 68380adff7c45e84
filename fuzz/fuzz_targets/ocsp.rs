//! An OCSP response (arbitrary bytes) checked against a request for a PKITS certificate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::{FromDer, X509Certificate};

use certgate::authn::revocation::ocsp::wire;

static ISSUER: &[u8] = include_bytes!("../../tests/data/pkits/GoodCACert.crt");

fuzz_target!(|data: &[u8]| {
    let (_, issuer) = X509Certificate::from_der(ISSUER).expect("PKITS CA");
    let query = wire::request(&issuer, &[0x01]).expect("request");
    let _ = wire::read_response(data, &query, &issuer, 1_900_000_000);
});
