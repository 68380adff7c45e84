//! A client certificate (arbitrary DER) → ClientIdentity and the XFCC value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = certgate::authn::identity::ClientIdentity::from_der(data) {
        let _ = certgate::http::headers::xfcc(&id);
    }
});
