use super::*;

const PEPPER: &[u8] = b"0123456789abcdef0123456789abcdef";
/// 2027-01-01T00:00:00Z
const NEW_YEAR: i64 = 1_798_761_600;

fn record(id: &str, hash: &str, sunset: &str) -> RawKey {
    RawKey {
        id: id.into(),
        owner: "team-erp".into(),
        hash: hash.into(),
        created: "2026-12-01T10:00:00Z".into(),
        sunset: sunset.into(),
        routes: vec!["orders".into()],
        cutover: Cutover::None,
        revoked: false,
    }
}

fn compile(records: Vec<RawKey>) -> Result<ApiKeys, KeysFileError> {
    ApiKeys::compile(
        &RawKeysFile { key: records },
        Pepper::new(PEPPER).unwrap(),
        |r| r == "orders" || r == "invoices",
    )
}

/// An issued key and its record.
fn issued(sunset: &str) -> (String, RawKey) {
    let (id, key) = format::generate().unwrap();
    let hash = Pepper::new(PEPPER).unwrap().hash(&key);
    (key, record(&id, &hash, sunset))
}

#[test]
fn an_issued_key_is_found_by_id_and_its_hmac_checked() {
    let (key, rec) = issued("2027-03-31");
    let keys = compile(vec![rec]).unwrap();
    let r = keys.check(&key, NEW_YEAR).unwrap();
    assert_eq!(&*r.owner, "team-erp");
    assert!(r.allows("orders") && !r.allows("invoices"));
    assert_eq!(r.deprecation_header, "@1796119200");
    assert_eq!(r.sunset_header, "Wed, 31 Mar 2027 00:00:00 GMT");
}

#[test]
fn wrong_unknown_malformed_revoked_and_sunset_keys_are_refused() {
    let (key, rec) = issued("2027-03-31");
    let (other_key, _) = issued("2027-03-31");
    let keys = compile(vec![rec.clone()]).unwrap();
    assert_eq!(
        keys.check(&other_key, NEW_YEAR).unwrap_err(),
        KeyFailure::Unknown
    );
    // Same id, another secret (with a valid check): the HMAC decides.
    let (_, forged) = format::generate().unwrap();
    let forged_body = format!("cgk_{}_{}", rec.id, &forged[14..36]);
    let forged = format!("{forged_body}_{}", format::checksum(&forged_body));
    assert_eq!(
        keys.check(&forged, NEW_YEAR).unwrap_err(),
        KeyFailure::Unknown
    );
    let mut typo = key.clone().into_bytes();
    typo[20] ^= 1;
    assert_eq!(
        keys.check(&String::from_utf8_lossy(&typo), NEW_YEAR)
            .unwrap_err(),
        KeyFailure::Malformed
    );
    assert_eq!(
        keys.check("letmein", NEW_YEAR).unwrap_err(),
        KeyFailure::Malformed
    );
    // The sunset day itself is refused, from 00:00 UTC.
    assert!(keys.check(&key, 1_806_451_199).is_ok());
    assert_eq!(
        keys.check(&key, 1_806_451_200).unwrap_err(),
        KeyFailure::Sunset
    );
    let revoked = compile(vec![RawKey {
        revoked: true,
        ..rec
    }])
    .unwrap();
    assert_eq!(
        revoked.check(&key, NEW_YEAR).unwrap_err(),
        KeyFailure::Revoked
    );
}

#[test]
fn an_imported_legacy_key_is_checked_once_with_argon2() {
    let hash = hash_legacy("legacy-secret-123").unwrap();
    assert!(hash.starts_with("argon2id:$argon2id$"));
    let keys = compile(vec![record("legacy-1", &hash, "2027-03-31")]).unwrap();
    assert!(keys.has_legacy());
    let r = keys.check_legacy("legacy-secret-123", NEW_YEAR).unwrap();
    assert_eq!(r.id, "legacy-1");
    // Remembered: the second presentation does not run argon2 again (same answer).
    assert_eq!(keys.legacy_seen.load().len(), 1);
    assert!(keys.check_legacy("legacy-secret-123", NEW_YEAR).is_ok());
    assert_eq!(
        keys.check_legacy("legacy-secret-124", NEW_YEAR)
            .unwrap_err(),
        KeyFailure::Unknown
    );
    assert_eq!(keys.legacy_seen.load().len(), 2);
    // An imported key never passes the issued-key check.
    assert!(keys.check("legacy-secret-123", NEW_YEAR).is_err());
}

#[test]
fn the_keys_file_holds_hashes_only() {
    let (key, rec) = issued("2027-03-31");
    let plain = compile(vec![RawKey {
        hash: key.clone(),
        ..rec.clone()
    }])
    .unwrap_err();
    assert_eq!(plain.key, "key[0].hash");
    assert!(plain.problem.contains("plaintext API key"), "{plain}");
    assert!(
        !plain.to_string().contains(&key),
        "the key is never printed"
    );
    for (bad, field) in [
        (
            RawKey {
                hash: "sha1:abc".into(),
                ..rec.clone()
            },
            "key[0].hash",
        ),
        (
            RawKey {
                hash: "hmac-sha256:abcd".into(),
                ..rec.clone()
            },
            "key[0].hash",
        ),
        (
            RawKey {
                sunset: "31/03/2027".into(),
                ..rec.clone()
            },
            "key[0].sunset",
        ),
        (
            RawKey {
                created: "yesterday".into(),
                ..rec.clone()
            },
            "key[0].created",
        ),
        (
            RawKey {
                routes: vec![],
                ..rec.clone()
            },
            "key[0].routes",
        ),
        (
            RawKey {
                routes: vec!["nowhere".into()],
                ..rec.clone()
            },
            "key[0].routes",
        ),
        (
            RawKey {
                owner: " ".into(),
                ..rec.clone()
            },
            "key[0].owner",
        ),
        (
            RawKey {
                id: "a b".into(),
                ..rec.clone()
            },
            "key[0].id",
        ),
    ] {
        assert_eq!(compile(vec![bad]).unwrap_err().key, field);
    }
    let twice = compile(vec![rec.clone(), rec]).unwrap_err();
    assert_eq!(twice.key, "key[1].id");
    assert!(Pepper::new(b"short").is_err());
}

#[test]
fn a_connection_remembers_only_the_key_it_proved_against_the_same_set() {
    let (key, rec) = issued("2027-03-31");
    let (other_key, other) = issued("2027-03-31");
    let keys = compile(vec![rec.clone(), other]).unwrap();
    let conn = ConnKeyCache::default();
    let first = keys.check_on(&conn, &key, NEW_YEAR).unwrap();
    // The same key again: the remembered record (the same allocation).
    let again = keys.check_on(&conn, &key, NEW_YEAR).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    // Another key on the connection is checked in full (and becomes the remembered one).
    let second = keys.check_on(&conn, &other_key, NEW_YEAR).unwrap();
    assert_ne!(second.id, first.id);
    // A forged key with a remembered id is not taken from memory.
    let body = format!("cgk_{}_{}", rec.id, "A".repeat(22));
    let forged = format!("{body}_{}", format::checksum(&body));
    assert_eq!(
        keys.check_on(&conn, &forged, NEW_YEAR).unwrap_err(),
        KeyFailure::Unknown
    );
    // Past the sunset, the remembered key stops like any other.
    keys.check_on(&conn, &key, NEW_YEAR).unwrap();
    assert_eq!(
        keys.check_on(&conn, &key, NEW_YEAR + 365 * 86400)
            .unwrap_err(),
        KeyFailure::Sunset
    );
    // A reloaded keys file (here: the key revoked) is a new set: nothing is taken from memory.
    keys.check_on(&conn, &key, NEW_YEAR).unwrap();
    let revoked = compile(vec![RawKey {
        revoked: true,
        ..rec
    }])
    .unwrap();
    assert_eq!(
        revoked.check_on(&conn, &key, NEW_YEAR).unwrap_err(),
        KeyFailure::Revoked
    );
}
