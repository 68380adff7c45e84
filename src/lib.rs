//! certgate: an mTLS-enforcing reverse proxy gateway.
//!
//! The path of one request: TLS handshake ([`tls`]) → [`identity::ClientIdentity`] once per
//! connection → per request [`path`] normalisation, routing and [`policy`] → [`proxy`] forwarding
//! to an [`upstream`] → access log and metrics ([`telemetry`]). Reloadable state lives in one
//! [`snapshot::Snapshot`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod authority;
pub mod body;
pub mod config;
pub mod error;
pub mod framing;
pub mod headers;
pub mod identity;
pub mod inventory;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod tunnel;
pub mod upstream;
