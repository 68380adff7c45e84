//! End-to-end tests: the real `certgate` binary on 127.0.0.1, real TLS, a PKI made by the tests.

mod anomalies;
mod cli;
mod common;
mod curl;
mod fleet_inventory;
mod fleet_limits;
mod forwarding;
mod foundation;
mod integrity;
mod kubernetes;
mod lifecycle;
mod limits;
mod observability;
mod ocsp;
mod owners;
mod paths;
mod pending_crls;
mod pkits;
mod policy;
mod pools;
mod protocols;
mod rate_limits;
mod revocation;
mod services;
mod tls_auth;
mod tokens;
