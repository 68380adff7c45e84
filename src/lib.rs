//! certgate: an mTLS-enforcing reverse proxy gateway.
//!
//! The path of one request, folder by folder: [`listener`] accepts and runs the TLS handshake
//! (verifier and identity from [`authn`]); [`http`] runs the request phases — authority, path,
//! route and policy ([`authz`]), rate limits ([`limits`]), forwarding to an [`upstream`], the answer and its record in
//! [`telemetry`] and the [`inventory`]. [`state`] holds the current [`state::Snapshot`] (the
//! compiled [`config`]) and the live state that outlives it; [`runtime`] starts, reloads and
//! stops the whole. The `certgate` binary's `cli` is a thin layer over this library.
// Denied, not forbidden, for one audited exception: `util::memory`'s call into the C allocator.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod authn;
pub mod authz;
pub mod config;
pub mod http;
pub mod inventory;
pub mod limits;
pub mod listener;
pub mod runtime;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod util;
