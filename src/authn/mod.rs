//! Who is calling: the rustls verifier that checks a client's chain against the trust store and
//! intermediates ([`tls`]) and its revocation status ([`revocation`]), and the
//! [`identity::ClientIdentity`] read once per connection from the verified leaf.

pub mod apikey;
pub mod fetch;
pub mod identity;
pub mod revocation;
pub mod tls;
pub mod token;
