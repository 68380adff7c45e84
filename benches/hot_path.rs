//! Micro-benchmarks of the per-request hot path. `cargo bench --bench hot_path` prints figures.
//!
//! - `policy/*`: routing plus policy with 1, 100 and 1,000 routes (hit first, hit last, miss).
//! - `path/*`: path normalisation (clean and tricky paths).
//! - `identity/from_der`: extracting the identity from a client certificate (once per connection).
//! - `headers/forwarding`: rewriting a request's headers for the upstream, XFCC included.
//! - `record/*`: what recording one finished request costs (metrics + credential inventory).
//! - `rate_limit/check_100k_identities`: one rate-limit check with 100,000 identities tracked.
//! - `anomaly/observe_100k_identities`: folding one request into the anomaly signals' state with
//!   100,000 identities watched (`observe_10_identities`: a handful of callers).
//! - `revocation/verify_chain_{10,1m}_crl`: verifying a client chain as a handshake does (chain
//!   signature, validity, EKU, then the CRL lookup) with a 10- and a 1,000,000-entry CRL loaded;
//!   `revocation/webpki_*`: the same with rustls' WebPKI verifier holding the CRL (the baseline).
//! - `token/*`: an access token's first verification (signature, per algorithm), and a token
//!   taken from the issuer's shared cache or the connection's cache (binding and time checked).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method, StatusCode};

use certgate::authn::identity::ClientIdentity;
use certgate::authn::token::TokenFailure;
use certgate::authz::owners::Owners;
use certgate::authz::{Credential, Verdict};
use certgate::telemetry::Telemetry;
use certgate::util::time::unix_now;

fn identity() -> ClientIdentity {
    ClientIdentity {
        subject: "CN=reader,O=Example".into(),
        common_names: vec!["reader".into()],
        organizations: vec!["Example".into()],
        organizational_units: vec![],
        issuer: "CN=Test CA".into(),
        issuer_common_names: vec!["Test CA".into()],
        uris: vec!["spiffe://example.org/ns/a/sa/reader".into()],
        dns_names: vec![],
        emails: vec![],
        serial: "01".into(),
        not_before: 0,
        not_after: i64::MAX,
        sha256: [7; 32],
        sha256_hex: hex::encode([7; 32]),
        der: rustls::pki_types::CertificateDer::from(Vec::new()),
    }
}

fn record(c: &mut Criterion) {
    let telemetry = Telemetry::new(10_000);
    let route = telemetry.metrics.route("payments");
    let route_id = telemetry.inventory.route_id("payments");
    let (entry, _) = telemetry.inventory.observe(&identity(), unix_now());
    let mut g = c.benchmark_group("record");
    g.bench_function("metrics", |b| {
        b.iter(|| {
            route.decision(black_box(Verdict::Allow));
            route.finished(
                black_box(&Method::GET),
                black_box(StatusCode::OK),
                black_box(Duration::from_micros(420)),
                black_box(0),
                black_box(24),
            );
        })
    });
    g.bench_function("metrics_uncached_status", |b| {
        b.iter(|| {
            route.finished(
                black_box(&Method::GET),
                black_box(StatusCode::IM_A_TEAPOT),
                black_box(Duration::from_micros(420)),
                black_box(0),
                black_box(24),
            );
        })
    });
    g.bench_function("inventory", |b| {
        b.iter(|| {
            entry.record(
                black_box(Some(route_id)),
                black_box(Verdict::Allow),
                unix_now(),
            )
        })
    });
    g.bench_function("metrics_and_inventory", |b| {
        b.iter(|| {
            route.decision(Verdict::Allow);
            route.finished(
                &Method::GET,
                StatusCode::OK,
                Duration::from_micros(420),
                0,
                24,
            );
            entry.record(Some(route_id), Verdict::Allow, unix_now());
        })
    });
    g.bench_function("inventory_observe_per_connection", |b| {
        let id = identity();
        b.iter(|| telemetry.inventory.observe(black_box(&id), unix_now()))
    });
    g.finish();
}

fn route_table(n: usize) -> certgate::authz::RouteTable {
    let routes = (0..n)
        .map(|i| {
            let raw: certgate::config::RawRoute = toml::from_str(&format!(
                "name = \"svc{i}\"\npath_prefix = \"/svc{i}\"\nmethods = [\"GET\"]\nupstream = \"up\"\n\
                 allow = [{{ uri = \"spiffe://example.org/ns/svc{i}/*\" }}, {{ cn = \"batch-{i}\", ou = \"ops\" }}]\n\
                 deny = [{{ sha256 = \"{}\" }}]",
                "ab".repeat(32)
            ))
            .expect("bench route");
            let upstreams = std::collections::HashMap::from([("up".to_string(), 0)]);
            let links = certgate::authz::Links {
                upstreams: &upstreams,
                issuers: &Default::default(),
                limits: &Default::default(),
            };
            certgate::authz::Route::compile(i, &raw, &links).expect("bench route compiles")
        })
        .collect();
    certgate::authz::RouteTable::new(routes)
}

fn policy(c: &mut Criterion) {
    let mut id = identity();
    let owners = Owners::default();
    let mut g = c.benchmark_group("policy");
    for n in [1usize, 100, 1000] {
        let table = route_table(n);
        let last = n - 1;
        id.uris = vec![format!("spiffe://example.org/ns/svc{last}/sa/reader")];
        let first_path = "/svc0/items/42".to_string();
        let last_path = format!("/svc{last}/items/42");
        for (case, path) in [
            ("hit_first", first_path.as_str()),
            ("hit_last", last_path.as_str()),
            ("miss", "/nowhere/at/all"),
        ] {
            g.bench_function(format!("{n}_routes/{case}"), |b| {
                b.iter(|| {
                    let parts = certgate::authz::RequestParts::new(
                        &Method::GET,
                        Some("api.example.com"),
                        black_box(path),
                    );
                    let credential = Credential::of(Some(&id), None);
                    black_box(table.find(&parts).map(|route| {
                        certgate::authz::decide(&parts, &credential, route, &owners, |_| {
                            Err(TokenFailure::Missing)
                        })
                        .verdict
                    }))
                })
            });
        }
    }
    g.finish();
}

fn path(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    for (case, p) in [
        ("clean", "/payments/v1/accounts/12345/transactions"),
        ("dot_segments", "/payments/v1/../v2/./accounts//12345"),
        ("percent_encoded", "/payments/%76%31/accounts/%7Ebob/a%20b"),
    ] {
        g.bench_function(case, |b| {
            b.iter(|| black_box(certgate::authz::path::normalize(black_box(p)).map(|c| c.len())))
        });
    }
    g.finish();
}

fn identity_extraction(c: &mut Criterion) {
    let ca = certgate_testpki::Ca::root("Bench CA").expect("ca");
    let leaf = ca
        .issue(&certgate_testpki::LeafSpec {
            uris: vec!["spiffe://example.org/ns/billing/sa/reader".into()],
            o: Some("Example".into()),
            ou: Some("billing".into()),
            dns: vec!["reader.billing.svc".into()],
            ..certgate_testpki::LeafSpec::client("reader")
        })
        .expect("leaf");
    c.bench_function("identity/from_der", |b| {
        b.iter(|| black_box(ClientIdentity::from_der(black_box(&leaf.der)).map(|i| i.sha256)))
    });
}

fn revocation(c: &mut Criterion) {
    use certgate::authn::revocation::{check::Revocation, crl};
    use certgate::config::{ClientAuthMode, RevocationScope, StaleCrl, UnknownRevocation};
    use rustls::pki_types::CertificateDer;
    let ca = certgate_testpki::Ca::root("Bench CA").expect("ca");
    let leaf = ca
        .issue(&certgate_testpki::LeafSpec::client("reader"))
        .expect("leaf");
    let leaf_der = CertificateDer::from(leaf.der.clone());
    let ca_der = CertificateDer::from(ca.der.clone());
    for (name, n) in [("10", 10u64), ("1m", 1_000_000)] {
        let serials: Vec<_> = certgate_testpki::synthetic_serials(n).collect();
        let pem = ca.crl(&serials, Duration::from_secs(86400)).expect("crl");
        let crls = crl::parse_crls(pem.as_bytes(), std::slice::from_ref(&ca_der)).expect("usable");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der.clone()).expect("root");
        let subject = x509_parser::parse_x509_certificate(&ca.der)
            .expect("ca")
            .1
            .subject()
            .as_raw()
            .to_vec();
        let verifier =
            certgate::authn::tls::client_verifier(certgate::authn::tls::ClientAuthSettings {
                mode: ClientAuthMode::Require,
                roots,
                intermediates: Vec::new(),
                revocation: Some(
                    Revocation::new(
                        crls.into_iter().map(|c| ("bench.crl".to_string(), c)),
                        vec![subject],
                        RevocationScope::Chain,
                        UnknownRevocation::Deny,
                        StaleCrl::Deny,
                        std::sync::Arc::new(
                            |_: &str,
                             _: &str,
                             _: &Result<
                                (),
                                certgate::authn::revocation::pending::SignatureError,
                            >| {},
                        ),
                    ),
                ),
            })
            .expect("verifier");
        // The baseline: rustls' WebPKI verifier given the same CRL (what certgate did before).
        use rustls::pki_types::pem::PemObject;
        let der: Vec<_> =
            rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("pem");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der.clone()).expect("root");
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            certgate::authn::tls::provider(),
        )
        .with_crls(der)
        .build()
        .expect("webpki verifier");
        c.bench_function(&format!("revocation/webpki_verify_chain_{name}_crl"), |b| {
            b.iter(|| {
                black_box(certgate::authn::tls::verify_chain(
                    &*webpki,
                    black_box(&leaf_der),
                    &[],
                ))
                .is_ok()
            })
        });
        c.bench_function(&format!("revocation/verify_chain_{name}_crl"), |b| {
            b.iter(|| {
                black_box(certgate::authn::tls::verify_chain(
                    &*verifier,
                    black_box(&leaf_der),
                    &[],
                ))
                .is_ok()
            })
        });
    }
}

fn headers(c: &mut Criterion) {
    let id = identity();
    let peer_ip = HeaderValue::from_static("10.1.2.3");
    let request_id = HeaderValue::from_static("5f0c6a2e9b1d4c7e8a3f2b1c0d9e8f7a");
    let mut template = http::HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "billing-client/2.3"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("authorization", "Bearer abc"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ] {
        template.insert(
            http::header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    let mut spoofed = template.clone();
    spoofed.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_static("Hash=evil"),
    );
    let authority = HeaderValue::from_static("api.example.com");
    let xfcc = certgate::http::headers::xfcc(&id);
    let fwd = certgate::http::headers::Forwarding {
        xfcc: Some(&xfcc),
        peer_ip: &peer_ip,
        request_id: &request_id,
        authority: &authority,
        upgrade: None,
        strip: &[],
        token: None,
        keep_authorization: true,
        api_key: None,
        key_header: None,
        credential: None,
    };
    let mut g = c.benchmark_group("headers");
    g.bench_function("forwarding", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| certgate::http::headers::forwarding_headers(h, &fwd),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("forwarding_with_spoofed_identity", |b| {
        b.iter_batched_ref(
            || spoofed.clone(),
            |h| certgate::http::headers::forwarding_headers(h, &fwd),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// An issuer `corp` whose JWKS holds `key`.
fn issuer(
    key: &certgate_testpki::jwt::SigningKey,
) -> std::sync::Arc<certgate::authn::token::Issuer> {
    use certgate::authn::token::{Issuer, IssuerSpec, JwksSource, KeySet};
    let raw: certgate::config::RawTokenIssuer = toml::from_str(
        "issuer = \"https://idp\"\naudiences = [\"https://api\"]\njwks = \"jwks.json\"\nalgorithms = [\"ES256\", \"RS256\", \"EdDSA\"]",
    )
    .expect("issuer");
    let algs = certgate::authn::token::parse_algorithms(&raw.algorithms).expect("algorithms");
    let keys = KeySet::parse(certgate_testpki::jwt::jwks(&[key]).as_bytes(), &algs).expect("jwks");
    let counter = |_: &str| prometheus::IntCounter::new("c", "c").expect("counter");
    std::sync::Arc::new(
        Issuer::compile(IssuerSpec {
            name: "corp",
            raw: &raw,
            algorithms: algs.clone(),
            source: JwksSource::File("jwks.json".into()),
            keys: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(keys)),
            remote: None,
            counter: &counter,
        })
        .expect("issuer compiles"),
    )
}

fn tokens(c: &mut Criterion) {
    use certgate::authn::token::cache::ConnTokenCache;
    use certgate::authn::token::{check::authenticate, jwt};
    use certgate_testpki::jwt::{SigningKey, claims};
    use jsonwebtoken::Algorithm;
    let leaf = [7u8; 32];
    let now = unix_now() as u64;
    let mut g = c.benchmark_group("token");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg, "k");
        let issuer = issuer(&key);
        let mut cl = claims("https://idp", "https://api", None, now);
        cl["cnf"] = serde_json::json!({"x5t#S256": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, leaf)});
        let token = key.sign(&cl);
        let keys = issuer.keys.load_full();
        g.bench_function(format!("verify_cold_{alg:?}"), |b| {
            b.iter(|| jwt::verify(&issuer, &keys, black_box(&token)).expect("verifies"))
        });
        if alg == Algorithm::ES256 {
            authenticate(
                &issuer,
                &token,
                &ConnTokenCache::default(),
                Some(&leaf),
                now,
            )
            .expect("accepted");
            g.bench_function("authenticate_shared_cache", |b| {
                b.iter(|| {
                    let conn = ConnTokenCache::default();
                    authenticate(&issuer, black_box(&token), &conn, Some(&leaf), now)
                        .expect("accepted")
                })
            });
            let conn = ConnTokenCache::default();
            g.bench_function("authenticate_connection_cache", |b| {
                b.iter(|| {
                    authenticate(&issuer, black_box(&token), &conn, Some(&leaf), now)
                        .expect("accepted")
                })
            });
        }
    }
    g.finish();
}

fn rate_limits(c: &mut Criterion) {
    use certgate::config::LimitKeyKind;
    use certgate::limits::{LimitKey, RateLimit, RateLimitSpec};
    let limit = RateLimit::new(RateLimitSpec {
        requests: 1_000_000,
        per: Duration::from_secs(1),
        burst: 1_000_000,
        key: LimitKeyKind::Identity,
    });
    let keys: Vec<LimitKey> = (0..100_000u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            LimitKey::Identity(certgate::util::digest::sha256(&k))
        })
        .collect();
    for k in &keys {
        limit.check(k);
    }
    let mut g = c.benchmark_group("rate_limit");
    let mut i = 0usize;
    g.bench_function("check_100k_identities", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            limit.check(black_box(&keys[i]))
        })
    });
    g.finish();
}

fn anomalies(c: &mut Criterion) {
    use certgate::config::RawAnomaly;
    use certgate::telemetry::anomaly::{AnomalySpec, Request, Watched};
    let telemetry = Telemetry::new(10);
    let spec = AnomalySpec::compile(&RawAnomaly::default())
        .unwrap()
        .unwrap();
    let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let hashes: Vec<([u8; 32], String)> = (0..100_000u32)
        .map(|i| {
            let h = certgate::util::digest::sha256(&i.to_le_bytes());
            (h, hex::encode(h))
        })
        .collect();
    fn request(id: &([u8; 32], String), source: std::net::IpAddr) -> Request<'_> {
        Request {
            who: Watched::Certificate(id.0),
            identity: Some((id.1.as_str(), "CN=reader,O=Example")),
            owner: None,
            source,
            route: Some((0, "payments-read")),
            refused: false,
        }
    }
    for h in &hashes {
        telemetry.anomalies.observe(&spec, &request(h, ip));
    }
    let mut g = c.benchmark_group("anomaly");
    let mut i = 0usize;
    g.bench_function("observe_100k_identities", |b| {
        b.iter(|| {
            i = (i + 7919) % hashes.len();
            telemetry
                .anomalies
                .observe(&spec, black_box(&request(&hashes[i], ip)))
        })
    });
    // A sidecar's usual case: a handful of callers, their state in cache.
    g.bench_function("observe_10_identities", |b| {
        b.iter(|| {
            i = (i + 1) % 10;
            telemetry
                .anomalies
                .observe(&spec, black_box(&request(&hashes[i], ip)))
        })
    });
    g.finish();
}

/// Legacy API keys: what a key route adds per request (shape check, lookup by id among 100,000
/// records, HMAC-SHA-256, constant-time compare), and loading 100,000 records.
fn api_keys(c: &mut Criterion) {
    use certgate::authn::apikey::{ApiKeys, Pepper, format};
    use certgate::config::{RawKey, RawKeysFile};
    let pepper = b"0123456789abcdef0123456789abcdef";
    let hasher = Pepper::new(pepper).expect("pepper");
    let mut wanted = String::new();
    let raw = RawKeysFile {
        key: (0..100_000)
            .map(|i| {
                let (id, key) = format::generate().expect("key");
                if i == 50_000 {
                    wanted = key.clone();
                }
                RawKey {
                    id,
                    owner: format!("team-{}", i % 100),
                    hash: hasher.hash(&key),
                    created: "2026-12-01T00:00:00Z".into(),
                    sunset: "2099-01-01".into(),
                    routes: vec!["orders".into()],
                    cutover: Default::default(),
                    revoked: false,
                }
            })
            .collect(),
    };
    let keys =
        ApiKeys::compile(&raw, Pepper::new(pepper).expect("pepper"), |_| true).expect("keys");
    let now = unix_now();
    let mut g = c.benchmark_group("api_key");
    g.bench_function("check_of_100k", |b| {
        b.iter(|| black_box(keys.check(black_box(&wanted), now).is_ok()))
    });
    g.bench_function("malformed_refused", |b| {
        b.iter(|| black_box(keys.check(black_box("cgk_notakey"), now).is_err()))
    });
    // What a reload of the keys file does: parse the TOML, then compile.
    let text = toml::to_string(&raw).expect("keys file");
    g.sample_size(10);
    g.bench_function("load_100k_from_file_text", |b| {
        b.iter(|| {
            let parsed: RawKeysFile =
                certgate::config::parse_toml(std::path::Path::new("k.toml"), &text).expect("toml");
            ApiKeys::compile(&parsed, Pepper::new(pepper).expect("pepper"), |_| true)
                .map(|k| k.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    api_keys,
    anomalies,
    policy,
    path,
    identity_extraction,
    revocation,
    headers,
    record,
    tokens,
    rate_limits
);
criterion_main!(benches);
