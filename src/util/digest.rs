//! SHA-256 as a fixed-size array (certificate fingerprints, file and token digests).

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 over a label and names, each preceded by a NUL: a stable key for something named
/// (never for a secret).
pub fn named_key(label: &str, names: &[&str]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(label.as_bytes());
    for n in names {
        ctx.update(b"\0");
        ctx.update(n.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
