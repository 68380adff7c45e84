//! Inventory unit tests.
use super::*;
use crate::authz::Verdict;

fn id(n: u8, not_after: i64) -> ClientIdentity {
    ClientIdentity {
        subject: format!("CN=client-{n}"),
        common_names: vec![],
        organizations: vec![],
        organizational_units: vec![],
        issuer: "CN=CA".into(),
        issuer_common_names: vec![],
        uris: vec![format!("spiffe://t/{n}")],
        dns_names: vec![],
        emails: vec![],
        serial: format!("{n:02x}"),
        not_before: 0,
        not_after,
        sha256: [n; 32],
        sha256_hex: hex::encode([n; 32]),
        der: rustls::pki_types::CertificateDer::from(Vec::new()),
    }
}

#[test]
fn counts_routes_and_sorting() {
    let inv = Inventory::new(10);
    let a = inv.route_id("a");
    let b = inv.route_id("b");
    assert_eq!(inv.route_id("a"), a);
    let (e2, _) = inv.observe(&id(2, 100), 10);
    let (e1, _) = inv.observe(&id(1, 100), 10);
    e1.record(Some(a), Verdict::Allow, 11);
    e1.record(Some(b), Verdict::Deny, 12);
    e1.record(Some(a), Verdict::Allow, 13);
    e1.record(None, Verdict::NoRoute, 14);
    e2.record(Some(5000), Verdict::Allow, 11); // beyond the bitset
    let (again, _) = inv.observe(&id(1, 100), 20);
    assert!(Arc::ptr_eq(&again, &e1));
    let r = inv.records();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].subject(), "CN=client-1");
    assert_eq!((r[0].requests_allowed, r[0].requests_denied), (2, 1));
    assert_eq!(r[0].routes, ["a", "b"]);
    assert_eq!(r[0].routes_allowed, ["a"]);
    assert_eq!(r[0].routes_refused, ["b"], "refused only");
    assert_eq!((r[0].first_seen, r[0].last_seen), (10, 20));
    assert_eq!(e2.routes_allowed.ids(), [5000]);
    // Refused first, allowed later: no longer "refused only".
    e1.record(Some(b), Verdict::Allow, 21);
    let r = inv.records();
    assert_eq!(r[0].routes_allowed, ["a", "b"]);
    assert!(r[0].routes_refused.is_empty());
}

#[test]
fn cap_evicts_least_recently_seen() {
    let inv = Inventory::new(2);
    inv.observe(&id(1, 0), 100);
    inv.observe(&id(2, 0), 50);
    inv.observe(&id(1, 0), 200);
    let (_, evicted) = inv.observe(&id(3, 0), 300);
    assert_eq!(evicted, 1);
    assert_eq!(inv.evictions(), 1);
    let subjects: Vec<String> = inv
        .records()
        .iter()
        .map(|r| r.subject().to_string())
        .collect();
    assert_eq!(subjects, ["CN=client-1", "CN=client-3"]);
}

#[test]
fn save_load_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.json");
    let inv = Inventory::new(10);
    let r = inv.route_id("payments");
    inv.observe(&id(7, 1000), 5)
        .0
        .record(Some(r), Verdict::Allow, 6);
    assert_eq!(inv.save(&path).unwrap(), 1);

    let back = Inventory::new(10);
    back.route_id("other"); // ids differ in the new process; names survive
    assert_eq!(back.load(&path), LoadOutcome::Loaded(1));
    let recs = back.records();
    assert_eq!(recs[0].routes, ["payments"]);
    assert_eq!(recs[0].requests_allowed, 1);
    assert_eq!(recs[0].last_seen, 6);

    assert_eq!(
        Inventory::new(1).load(&dir.path().join("none.json")),
        LoadOutcome::NoFile
    );
    std::fs::write(&path, b"{ not json").unwrap();
    let fresh = Inventory::new(10);
    match fresh.load(&path) {
        LoadOutcome::SetAside(aside, _) => {
            assert!(aside.to_string_lossy().contains(".corrupt-"));
            assert!(aside.exists());
            assert!(!path.exists());
        }
        other => panic!("{other:?}"),
    }
    assert!(fresh.is_empty());
}

#[test]
fn filters() {
    let f = Filter::from_query(Some("expiring_within=7d&route=a%20b")).unwrap();
    assert_eq!(f.expiring_within_secs, Some(7 * 86400));
    assert_eq!(f.route.as_deref(), Some("a b"));
    assert!(Filter::from_query(Some("expiring_within=soon")).is_err());
    assert!(Filter::from_query(Some("colour=red")).is_err());
    assert!(Filter::from_query(None).unwrap().route.is_none());
}

fn key_described(id: &str, sunset: i64) -> Described {
    Described {
        kind: Kind::ApiKey,
        key: credential_key(Kind::ApiKey, &[id]),
        name: id.to_string(),
        issuer: "keys.toml".into(),
        detail: "hmac-sha256".into(),
        not_before: 1,
        not_after: sunset,
    }
}

#[test]
fn registered_keys_are_listed_unused_updated_in_place_and_never_evicted() {
    let inv = Inventory::new(1);
    let owner: Option<Arc<str>> = Some("team-a".into());
    inv.register(&key_described("k1", 1000), owner.clone(), false, 10);
    inv.register(&key_described("k2", 50), owner.clone(), true, 10);
    // A certificate over the bound evicts certificates only.
    inv.observe(&id(1, 10_000), 20);
    inv.observe(&id(2, 10_000), 21);
    let records = inv.records();
    let kinds: Vec<_> = records.iter().map(|r| r.kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == Kind::ApiKey).count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Certificate).count(), 1);
    let k1 = records.iter().find(|r| r.subject() == "k1").unwrap();
    assert_eq!((k1.first_seen, k1.last_seen), (0, 0), "never used yet");
    // States: sunset past its day, revoked wins.
    let counts = inv.credential_counts(100, 10);
    assert_eq!(
        counts.get(&(Kind::ApiKey, "team-a".into(), "active")),
        Some(&1)
    );
    assert_eq!(
        counts.get(&(Kind::ApiKey, "team-a".into(), "revoked")),
        Some(&1)
    );
    inv.register(&key_described("k1", 60), owner, false, 30);
    let counts = inv.credential_counts(100, 10);
    assert_eq!(
        counts.get(&(Kind::ApiKey, "team-a".into(), "sunset")),
        Some(&1)
    );
    // Uses are counted per day, and only the last 30 days count for the migration report.
    let k1 = inv
        .credential(&credential_key(Kind::ApiKey, &["k1"]))
        .unwrap();
    let day = 86_400;
    k1.record(None, Verdict::Allow, 40 * day);
    k1.record(None, Verdict::Allow, 80 * day);
    k1.record(None, Verdict::Deny, 80 * day + 5);
    let records = inv.records();
    let r = records.iter().find(|r| r.subject() == "k1").unwrap();
    assert_eq!(r.first_seen, 40 * day);
    assert_eq!(
        r.uses_by_day,
        [
            DayUses {
                day: 40,
                requests: 1
            },
            DayUses {
                day: 80,
                requests: 2
            }
        ]
    );
    let rows = migration_rows(&records, 80 * day + 10, 0);
    let k1 = rows.iter().find(|r| r.key_id == "k1").unwrap();
    assert_eq!(k1.uses_30d, Some(2), "day 40 is outside the window");
    assert!(!k1.owner_uses_certificate);
}
