//! Revocation: CRLs verified once when they are read ([`crl`]) and kept as compact sorted
//! serial sets ([`serials`]), looked up after a chain verifies ([`check`]).

pub mod check;
pub mod crl;
pub mod serials;
