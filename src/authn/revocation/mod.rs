//! Revocation: CRLs verified once when they are read ([`crl`]) and kept as compact sorted
//! serial sets ([`serials`]), looked up after a chain verifies ([`check`]); CRLs fetched from
//! URLs into a cache ([`remote`]); CRLs of CAs that only clients present, verified against the
//! first such CA ([`pending`]).

pub mod check;
pub mod crl;
pub mod ocsp;
pub mod pending;
pub mod remote;
pub mod serials;
