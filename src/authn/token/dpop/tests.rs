//! Each check of a DPoP proof, with proofs minted here (ES256 with aws-lc-rs).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;
const URL: &str = "https://api.example.com/orders/1";

struct Signer {
    key: EcdsaKeyPair,
    jwk: Value,
}

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { key, jwk }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let body = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), body.as_bytes())
            .unwrap();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }

    fn proof(&self, claims: Value) -> String {
        self.sign(&self.header(), &claims)
    }
}

fn claims() -> Value {
    json!({ "htm": "GET", "htu": URL, "iat": NOW, "jti": "j-1",
            "ath": URL_SAFE_NO_PAD.encode(crate::util::digest::sha256(b"tok")) })
}

fn expect() -> Expect<'static> {
    Expect {
        method: "GET",
        url: URL,
        access_token: Some("tok"),
        algorithms: &[Algorithm::ES256, Algorithm::EdDSA],
        max_age: 60,
        now: NOW,
    }
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

#[test]
fn a_good_proof_proves_its_key_jti_and_time() {
    let s = Signer::new();
    let p = verify(&s.proof(claims()), &expect()).unwrap();
    assert_eq!((p.jti.as_str(), p.iat), ("j-1", NOW));
    let jwk: Jwk = serde_json::from_value(s.jwk.clone()).unwrap();
    assert_eq!(p.jkt, thumbprint(&jwk).unwrap());
    assert_eq!(p.jkt.len(), 43, "SHA-256, base64url without padding");
    // The URL as the client wrote it: scheme and host case, the default port, a query.
    for htu in [
        "HTTPS://API.example.com/orders/1",
        "https://api.example.com:443/orders/1",
        "https://api.example.com/orders/1?x=1#f",
    ] {
        let proof = s.proof(with(claims(), "htu", json!(htu)));
        assert!(verify(&proof, &expect()).is_ok(), "{htu}");
    }
    // A proof 5 s ahead of the clock is still fine.
    let ahead = s.proof(with(claims(), "iat", json!(NOW + 5)));
    assert!(verify(&ahead, &expect()).is_ok());
}

#[test]
fn every_check_refuses_what_it_should() {
    let s = Signer::new();
    let other = Signer::new();
    let e = expect();
    let cases: Vec<(String, ProofError)> = vec![
        ("a.b".into(), ProofError::Malformed),
        ("not a jws at all".into(), ProofError::Malformed),
        (
            s.sign(&with(s.header(), "typ", json!("JWT")), &claims()),
            ProofError::Type,
        ),
        (
            s.sign(&with(s.header(), "alg", json!("ES384")), &claims()),
            ProofError::Algorithm,
        ),
        (
            s.sign(&with(s.header(), "alg", json!("HS256")), &claims()),
            ProofError::Algorithm,
        ),
        (
            s.sign(&with(s.header(), "alg", json!("none")), &claims()),
            ProofError::Malformed,
        ),
        (
            s.sign(
                &json!({ "typ": "dpop+jwt", "alg": "ES256", "kid": "k1" }),
                &claims(),
            ),
            ProofError::Key,
        ),
        (
            s.sign(
                &with(s.header(), "jwk", with(s.jwk.clone(), "d", json!("AAAA"))),
                &claims(),
            ),
            ProofError::Key,
        ),
        // Signed by another key than the one it embeds.
        (other.sign(&s.header(), &claims()), ProofError::Signature),
        (
            s.proof(with(claims(), "htm", json!("POST"))),
            ProofError::Method,
        ),
        (
            s.proof(with(
                claims(),
                "htu",
                json!("https://api.example.com/orders/2"),
            )),
            ProofError::Url,
        ),
        (
            s.proof(with(
                claims(),
                "htu",
                json!("https://evil.example.com/orders/1"),
            )),
            ProofError::Url,
        ),
        (
            s.proof(with(
                claims(),
                "htu",
                json!("http://api.example.com/orders/1"),
            )),
            ProofError::Url,
        ),
        (
            s.proof(with(claims(), "iat", json!(NOW + 6))),
            ProofError::Time,
        ),
        (
            s.proof(with(claims(), "iat", json!(NOW - 61))),
            ProofError::Time,
        ),
        (
            s.proof(with(claims(), "iat", json!("now"))),
            ProofError::Time,
        ),
        (s.proof(with(claims(), "jti", json!(""))), ProofError::Jti),
        (
            s.proof(with(claims(), "ath", json!("wrong"))),
            ProofError::TokenHash,
        ),
    ];
    for (proof, want) in cases {
        assert_eq!(verify(&proof, &e), Err(want), "{proof}");
    }
    // A tampered payload no longer verifies.
    let good = s.proof(claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(claims(), "htm", json!("POST")).to_string());
    parts[1] = &forged;
    let e_post = Expect {
        method: "POST",
        ..expect()
    };
    assert_eq!(
        verify(&parts.join("."), &e_post),
        Err(ProofError::Signature)
    );
    // Without an access token, no ath is asked for.
    let no_token = Expect {
        access_token: None,
        ..expect()
    };
    assert!(verify(&s.proof(claims()), &no_token).is_ok());
}

#[test]
fn urls_compare_as_rfc_9449_says() {
    assert!(same_url("https://a.example/p", "https://A.EXAMPLE:443/p"));
    assert!(same_url("http://a.example:80/p?q", "http://a.example/p"));
    assert!(!same_url("https://a.example:8443/p", "https://a.example/p"));
    assert!(
        !same_url("https://a.example/P", "https://a.example/p"),
        "paths are exact"
    );
    assert!(!same_url("/p", "https://a.example/p"));
    assert!(!same_url("ftp://a.example/p", "ftp://a.example/p"));
}
