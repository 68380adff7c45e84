//! Who is calling: the rustls verifier that checks a client's chain against the trust store,
//! intermediates and CRLs ([`tls`]), and the [`identity::ClientIdentity`] read once per
//! connection from the verified leaf.

pub mod crl;
pub mod fetch;
pub mod identity;
pub mod tls;
pub mod token;
