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
    let limits = certgate::limits::registry::LimitRegistry::default();
    for (i, raw) in file.raw.routes.iter().enumerate() {
        // Every name a route gives resolves, so the whole route is compiled.
        let upstreams = std::collections::HashMap::from([(raw.upstream.clone(), 0)]);
        let issuers: std::collections::HashMap<String, usize> =
            raw.token.iter().map(|t| (t.issuer.clone(), 0)).collect();
        let links = certgate::authz::Links {
            upstreams: &upstreams,
            issuers: &issuers,
            limits: &limits,
        };
        let _ = certgate::authz::Route::compile(i, raw, &links);
    }
});
