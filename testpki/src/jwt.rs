//! A throwaway token issuer for tests, benchmarks and `demo`: signing keys of each algorithm
//! certgate accepts, their JWKS, and access tokens bound to a certificate (RFC 8705).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as a JWK (with `kid`, `alg` and `use`).
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh key for `alg` (ES256, ES384, RS256/PS256 and the other RSA ones, EdDSA).
    pub fn generate(alg: Algorithm, kid: &str) -> Self {
        let rng = SystemRandom::new();
        let (encoding, mut jwk) = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let (signing, crv, len) = if alg == Algorithm::ES256 {
                    (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("ec key");
                let pair =
                    signature::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).expect("ec key");
                let point = pair.public_key().as_ref();
                (
                    EncodingKey::from_ec_der(pkcs8.as_ref()),
                    json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])}),
                )
            }
            Algorithm::EdDSA => {
                let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed key");
                let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed key");
                (
                    EncodingKey::from_ed_der(pkcs8.as_ref()),
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
                )
            }
            _ => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("rsa key");
                let pkcs8 = pair.as_der().expect("rsa der");
                let public = pair.public_key();
                (
                    EncodingKey::from_rsa_der(pkcs1_of_pkcs8(pkcs8.as_ref())),
                    json!({"kty": "RSA", "n": b64(public.modulus().big_endian_without_leading_zero()), "e": b64(public.exponent().big_endian_without_leading_zero())}),
                )
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(format!("{alg:?}"));
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
        }
    }

    /// Signs `claims` with the RFC 9068 header: `typ: at+jwt`, this key's `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        self.sign_with(h, claims)
    }

    /// Signs a claims document given as raw JSON text (which may repeat a member name, as no
    /// `Value` can), with the RFC 9068 header.
    pub fn sign_raw(&self, claims_json: &str) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": self.alg, "typ": "at+jwt", "kid": self.kid});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims_json)
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg)
            .expect("sign token");
        format!("{message}.{sig}")
    }

    /// Signs `claims` with a header of the caller's making.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign token")
    }
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// RFC 8705 `x5t#S256` of a certificate: base64url(SHA-256(DER)).
pub fn x5t_s256(cert_der: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der).as_ref())
}

/// Access-token claims for `issuer`/`audience`, valid for an hour from `now`, bound to
/// `cert_der` when given.
pub fn claims(issuer: &str, audience: &str, cert_der: Option<&[u8]>, now: u64) -> Value {
    let mut c = json!({
        "iss": issuer,
        "aud": audience,
        "sub": "svc-ledger",
        "client_id": "ledger-client",
        "jti": format!("jti-{now}-{}", fastrand_u32()),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "scope": "payments:read payments:write",
    });
    if let Some(der) = cert_der {
        c["cnf"] = json!({"x5t#S256": x5t_s256(der)});
    }
    c
}

fn fastrand_u32() -> u32 {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    u32::from_le_bytes(b)
}

/// The `RSAPrivateKey` (PKCS #1) inside a PKCS #8 `PrivateKeyInfo`: the contents of its
/// OCTET STRING after the version and the algorithm identifier.
fn pkcs1_of_pkcs8(der: &[u8]) -> &[u8] {
    // (tag, header length, content length) of the DER element at the start of `b`.
    fn element(b: &[u8]) -> (u8, usize, usize) {
        let first = b[1] as usize;
        if first < 0x80 {
            return (b[0], 2, first);
        }
        let n = first & 0x7f;
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | *x as usize);
        (b[0], 2 + n, len)
    }
    let (_, h, _) = element(der);
    let mut rest = &der[h..];
    for _ in 0..2 {
        // version INTEGER, then the AlgorithmIdentifier SEQUENCE
        let (_, h, len) = element(rest);
        rest = &rest[h + len..];
    }
    let (tag, h, len) = element(rest);
    assert_eq!(tag, 0x04, "PKCS #8 privateKey is an OCTET STRING");
    &rest[h..h + len]
}
