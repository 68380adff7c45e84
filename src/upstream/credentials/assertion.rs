//! The client assertion of `private_key_jwt` (RFC 7523 §2.2, RFC 7521 §4.2): a short-lived JWT
//! the gateway signs with its own key to authenticate to a token endpoint. `iss` = `sub` = the
//! client id, `aud` = the token endpoint, `exp` one minute ahead, a random `jti` each time.
//!
//! Signed with aws-lc-rs directly: it reads the key files operators have (PKCS#8, SEC1 EC and
//! PKCS#1 RSA, as openssl and cert-manager write them), where jsonwebtoken's DER constructors
//! take one form per key type.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivateKeyDer;

/// How long an assertion is valid.
const LIFETIME_SECS: u64 = 60;

/// The gateway's signing key and the JWS algorithm its type implies.
pub enum SigningKey {
    Es256(EcdsaKeyPair),
    Es384(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Ps256(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.alg())
    }
}

impl SigningKey {
    /// Reads a P-256, P-384, Ed25519 or RSA (≥ 2048 bits) private key.
    pub fn from_der(key: &PrivateKeyDer<'_>) -> Result<Self, &'static str> {
        let der = key.secret_der();
        if let Ok(k) =
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            return Ok(Self::Es256(k));
        }
        if let Ok(k) =
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
        {
            return Ok(Self::Es384(k));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self::EdDsa(k));
        }
        let rsa = match key {
            PrivateKeyDer::Pkcs1(_) => RsaKeyPair::from_der(der),
            _ => RsaKeyPair::from_pkcs8(der),
        };
        match rsa {
            Ok(k) if k.public_modulus_len() >= 256 => Ok(Self::Ps256(k)),
            Ok(_) => Err("an RSA key must have at least 2048 bits"),
            Err(_) => Err("not a P-256, P-384, Ed25519 or RSA private key"),
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Es384(_) => "ES384",
            Self::EdDsa(_) => "EdDSA",
            Self::Ps256(_) => "PS256",
        }
    }

    /// A signed assertion for `client_id` at `audience`, issued at `now` (Unix seconds).
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> Result<String, Failed> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti).map_err(|_| Failed)?;
        let header = serde_json::json!({ "alg": self.alg(), "typ": "JWT" });
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME_SECS,
            "jti": hex::encode(jti),
        });
        let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.sign(&rng, jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, Failed> {
        match self {
            Self::Es256(k) | Self::Es384(k) => {
                Ok(k.sign(rng, message).map_err(|_| Failed)?.as_ref().to_vec())
            }
            Self::EdDsa(k) => Ok(k.sign(message).as_ref().to_vec()),
            Self::Ps256(k) => {
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, rng, message, &mut out)
                    .map_err(|_| Failed)?;
                Ok(out)
            }
        }
    }

    /// The public key (for tests that verify an assertion).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            Self::Es256(k) | Self::Es384(k) => k.public_key().as_ref().to_vec(),
            Self::EdDsa(k) => k.public_key().as_ref().to_vec(),
            Self::Ps256(k) => k.public_key().as_ref().to_vec(),
        }
    }
}

/// The signer failed (no randomness, a key the library refuses to use).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the client assertion")]
pub struct Failed;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::UnparsedPublicKey;

    fn parts(jws: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
        let p: Vec<_> = jws.split('.').collect();
        assert_eq!(p.len(), 3);
        let json = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        (
            json(p[0]),
            json(p[1]),
            URL_SAFE_NO_PAD.decode(p[2]).unwrap(),
        )
    }

    fn check(key: &SigningKey, verify: &'static dyn signature::VerificationAlgorithm) {
        let jws = key.assertion("gw", "https://as/token", 1000).unwrap();
        let (header, claims, sig) = parts(&jws);
        assert_eq!(header["alg"], key.alg());
        assert_eq!(claims["iss"], "gw");
        assert_eq!(claims["sub"], "gw");
        assert_eq!(claims["aud"], "https://as/token");
        assert_eq!(claims["exp"], 1060);
        let signed = &jws[..jws.rfind('.').unwrap()];
        UnparsedPublicKey::new(verify, key.public_key())
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies");
        // Tampered claims do not verify; two assertions never share a jti.
        let other = key.assertion("gw", "https://as/token", 1000).unwrap();
        assert_ne!(parts(&other).1["jti"], claims["jti"]);
        let mut bad = signed.as_bytes().to_vec();
        bad[signed.len() - 2] ^= 1;
        assert!(
            UnparsedPublicKey::new(verify, key.public_key())
                .verify(&bad, &sig)
                .is_err()
        );
    }

    #[test]
    fn each_key_type_signs_with_its_algorithm() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = SigningKey::from_der(&PrivateKeyDer::Pkcs8(p256.as_ref().to_vec().into()));
        check(&key.unwrap(), &signature::ECDSA_P256_SHA256_FIXED);
        let p384 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap();
        let key = SigningKey::from_der(&PrivateKeyDer::Pkcs8(p384.as_ref().to_vec().into()));
        check(&key.unwrap(), &signature::ECDSA_P384_SHA384_FIXED);
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = SigningKey::from_der(&PrivateKeyDer::Pkcs8(ed.as_ref().to_vec().into()));
        check(&key.unwrap(), &signature::ED25519);
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&rsa)
                .unwrap();
        let key = SigningKey::from_der(&PrivateKeyDer::Pkcs8(der.as_ref().to_vec().into()));
        check(&key.unwrap(), &signature::RSA_PSS_2048_8192_SHA256);
    }

    #[test]
    fn junk_is_no_key() {
        let junk = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
        assert!(SigningKey::from_der(&junk).is_err());
    }
}
