//! Micro-benchmarks of the per-request hot path. `cargo bench --bench hot_path` prints figures.
//!
//! - `record/*`: what recording one finished request costs (metrics + credential inventory).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method, StatusCode};

use certgate::identity::ClientIdentity;
use certgate::policy::Verdict;
use certgate::snapshot::unix_now;
use certgate::telemetry::Telemetry;

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
        xfcc: HeaderValue::from_static("Hash=07"),
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

criterion_group!(benches, record);
criterion_main!(benches);
