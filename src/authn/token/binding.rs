//! RFC 8705 §3: a token bound to a certificate carries `cnf."x5t#S256"`, the base64url SHA-256
//! of that certificate's DER, and is accepted only on a connection authenticated with it.

use super::{TokenFailure, VerifiedToken};

/// Checks `token`'s binding against the connection's leaf (its SHA-256), compared in constant
/// time. An unbound token passes only when binding is not required; a token bound to another
/// certificate (or presented without one) never does.
pub fn check(
    token: &VerifiedToken,
    leaf_sha256: Option<&[u8; 32]>,
    require_binding: bool,
) -> Result<(), TokenFailure> {
    match (&token.bound_to, leaf_sha256) {
        (Some(bound), Some(leaf)) => aws_lc_rs::constant_time::verify_slices_are_equal(bound, leaf)
            .map_err(|_| TokenFailure::BindingMismatch),
        (Some(_), None) => Err(TokenFailure::BindingMismatch),
        (None, _) if require_binding => Err(TokenFailure::Unbound),
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(bound_to: Option<[u8; 32]>) -> VerifiedToken {
        VerifiedToken {
            bound_to,
            ..Default::default()
        }
    }

    #[test]
    fn binding_follows_rfc_8705() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(check(&token(Some(a)), Some(&a), true), Ok(()));
        assert_eq!(check(&token(Some(a)), Some(&a), false), Ok(()));
        for require in [true, false] {
            assert_eq!(
                check(&token(Some(a)), Some(&b), require),
                Err(TokenFailure::BindingMismatch)
            );
            assert_eq!(
                check(&token(Some(a)), None, require),
                Err(TokenFailure::BindingMismatch)
            );
        }
        assert_eq!(
            check(&token(None), Some(&a), true),
            Err(TokenFailure::Unbound)
        );
        assert_eq!(check(&token(None), Some(&a), false), Ok(()));
        assert_eq!(check(&token(None), None, false), Ok(()));
    }
}
