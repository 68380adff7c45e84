//! The shape of an issued key: `cgk_<id>_<secret>_<check>`. The id (base62, not secret) finds
//! the key's record; the secret is at least 128 random bits in base62; the check is 6 base62
//! characters of CRC32 over everything before it, so secret scanners and the gateway reject a
//! mistyped or made-up key without a lookup. The `cgk_` prefix makes keys recognisable
//! wherever they turn up (a log line, a query string, a repository).

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What every issued key starts with.
pub const PREFIX: &str = "cgk_";
/// Characters of the id: 48 random bits.
const ID_LEN: usize = 9;
/// Characters of the secret: 62^22 > 2^130.
const SECRET_LEN: usize = 22;
/// Characters of the check: 62^6 > 2^32.
const CHECK_LEN: usize = 6;
/// The length of every issued key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + 1 + CHECK_LEN;

/// A key in the issued shape whose check holds: its id, for the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wellformed<'a> {
    pub id: &'a str,
}

/// Why a presented value is not an issued key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not in the cgk_<id>_<secret>_<check> shape")]
    Shape,
    #[error("the check characters do not match (mistyped or made up)")]
    Check,
}

/// A new key: its id and the whole key (shown once, never stored).
pub fn generate() -> Result<(String, String), aws_lc_rs::error::Unspecified> {
    let id = random_base62(ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let body = format!("{PREFIX}{id}_{secret}");
    let key = format!("{body}_{}", check(body.as_bytes()));
    Ok((id, key))
}

/// Checks the shape and the check characters of `key`; no lookup, no allocation.
pub fn parse(key: &str) -> Result<Wellformed<'_>, Malformed> {
    if key.len() != KEY_LEN || !key.is_ascii() || !key.starts_with(PREFIX) {
        return Err(Malformed::Shape);
    }
    let rest = &key[PREFIX.len()..];
    let (id, rest) = rest.split_at(ID_LEN);
    let (secret, check_part) = rest[1..].split_at(SECRET_LEN);
    let separators = rest.as_bytes()[0] == b'_' && check_part.as_bytes()[0] == b'_';
    let check_part = &check_part[1..];
    if !separators || ![id, secret, check_part].iter().all(|p| is_base62(p)) {
        return Err(Malformed::Shape);
    }
    let body = &key[..key.len() - CHECK_LEN - 1];
    if check(body.as_bytes()).as_bytes() != check_part.as_bytes() {
        return Err(Malformed::Check);
    }
    Ok(Wellformed { id })
}

/// Whether `s` looks like an issued key (for redaction: a key in a query string or a keys file
/// holding a key instead of its hash).
pub fn looks_like_key(s: &str) -> bool {
    s.contains(PREFIX)
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The check characters of `body` (`cgk_<id>_<secret>`).
#[cfg(test)]
pub(crate) fn checksum(body: &str) -> String {
    check(body.as_bytes())
}

fn check(body: &[u8]) -> String {
    let mut n = u64::from(crc32fast::hash(body));
    let mut out = [b'0'; CHECK_LEN];
    for c in out.iter_mut().rev() {
        *c = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `len` base62 characters from the system's CSPRNG (rejection sampling: no bias).
fn random_base62(len: usize) -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        aws_lc_rs::rand::fill(&mut buf)?;
        // 248 = 4 × 62: bytes at or above it would favour the first characters.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b % 62)]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_their_id() {
        let (id, key) = generate().unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.starts_with("cgk_"));
        assert_eq!(parse(&key), Ok(Wellformed { id: &id }));
        let (id2, key2) = generate().unwrap();
        assert_ne!((id, key), (id2, key2), "random ids and secrets");
    }

    #[test]
    fn a_changed_character_fails_the_check_without_a_lookup() {
        let (_, key) = generate().unwrap();
        for at in [4, 10, 20, key.len() - 1] {
            let mut b = key.clone().into_bytes();
            b[at] = if b[at] == b'a' { b'b' } else { b'a' };
            let bad = String::from_utf8(b).unwrap();
            assert_eq!(parse(&bad), Err(Malformed::Check), "{bad}");
        }
    }

    #[test]
    fn other_shapes_are_malformed() {
        let (_, key) = generate().unwrap();
        for bad in [
            String::new(),
            "cgk_".into(),
            key[..key.len() - 1].to_string(),
            format!("{key}0"),
            key.replacen("cgk_", "cgx_", 1),
            key.replacen('_', "-", 2),
            format!("{}é{}", &key[..10], &key[12..]),
            "Bearer abc".into(),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_secret_has_at_least_128_bits() {
        assert!((SECRET_LEN as f64) * 62f64.log2() >= 128.0);
        assert!(62u64.pow(CHECK_LEN as u32) > u64::from(u32::MAX));
    }
}
