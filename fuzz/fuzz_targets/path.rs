//! Path normalisation and route matching: never a panic, and a normalised path is a fixed
//! point that never holds a dot segment, '//' or an encoded separator.
#![no_main]
use libfuzzer_sys::fuzz_target;

use certgate::authz::path::{has_prefix, normalize, without_params};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize(p) else {
        return;
    };
    assert_eq!(normalize(&n).expect("fixed point"), n);
    assert!(!n.contains("//"));
    let lower = n.to_ascii_lowercase();
    assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"));
    assert!(n.split('/').all(|s| s != "." && s != ".."));
    let _ = has_prefix(&n, "/admin");
    if let Ok(w) = without_params(&n) {
        assert_eq!(normalize(&w).expect("fixed point"), w);
    }
});
