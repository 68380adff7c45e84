//! JWKS documents and JWT headers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let algs = certgate::authn::token::parse_algorithms(&[
        "ES256".to_string(),
        "RS256".to_string(),
        "EdDSA".to_string(),
    ])
    .expect("algorithms");
    let _ = certgate::authn::token::jwks::KeySet::parse(data, &algs);
    if let Ok(t) = std::str::from_utf8(data) {
        let _ = certgate::authn::token::jwt::header(t);
    }
});
