//! Header sanitising: hop-by-hop stripping (Connection-named headers included) and the client's
//! request id, over arbitrary header lists.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(64) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = certgate::http::headers::client_request_id(&headers);
    let tokens: Vec<String> = certgate::http::headers::connection_tokens(&headers)
        .map(str::to_string)
        .collect();
    certgate::http::headers::strip_hop_by_hop(&mut headers);
    assert!(headers.get("connection").is_none());
    for t in tokens {
        if let Ok(name) = http::HeaderName::from_bytes(t.as_bytes()) {
            assert!(
                headers.get(&name).is_none(),
                "{t} named by Connection survived"
            );
        }
    }
});
