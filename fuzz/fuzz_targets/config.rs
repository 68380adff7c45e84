//! Config text → parsed tables → every route compiled (matchers, paths, hosts, limits).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = certgate::config::ConfigFile::parse(std::path::Path::new("fuzz.toml"), text)
    else {
        return;
    };
    for (i, raw) in file.raw.routes.iter().enumerate() {
        let _ = certgate::authz::Route::compile(i, raw, |_| Some(0), |_| Some(0));
    }
});
