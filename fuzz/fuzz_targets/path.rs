//! Path normalisation and route matching: never a panic, and a normalised path is a fixed
//! point that never holds a dot segment, '//', an encoded separator, a segment ending in '.',
//! space or tab, or escapes that are not UTF-8; without its parameters (`;` or `%3B`) it is
//! one too.
#![no_main]
use libfuzzer_sys::fuzz_target;

use certgate::authz::path::{has_params, has_prefix, normalize, without_params};

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
    for seg in n.split('/').skip(1).filter(|s| !s.is_empty()) {
        let l = seg.to_ascii_lowercase();
        assert!(!l.ends_with('.') && !l.ends_with("%2e") && !l.ends_with("%20"), "{n}");
        assert!(!l.ends_with("%09"), "{n}");
    }
    let _ = has_prefix(&n, "/admin");
    if has_params(&n) {
        if let Ok(w) = without_params(&n) {
            assert_eq!(normalize(&w).expect("fixed point"), w);
            assert!(!has_params(&w), "{w}");
        }
    } else {
        assert!(!n.contains(';') && !n.contains("%3B"));
    }
});
