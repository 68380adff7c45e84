//! Revocation: CRLs verified once when they are read ([`crl`]) and kept as compact sorted
//! serial sets ([`serials`]), looked up after a chain verifies ([`check`]); CRLs fetched from
//! URLs into a cache ([`remote`]).

pub mod check;
pub mod crl;
pub mod ocsp;
pub mod remote;
pub mod serials;
