//! The fleet inventory in PostgreSQL: every gateway of a fleet upserts what it saw — each
//! credential's facts, and per gateway × route its counts and first/last seen — so one query
//! answers "which gateways saw this credential, and what did it call".
//!
//! The request path never touches the database: requests count into the in-memory inventory,
//! and a background task ([`sync`]) writes the difference since its last commit every
//! `flush_interval`, in one transaction per batch. A batch carries its own id; the database
//! records applied ids, so a batch retried after a lost commit acknowledgement is not counted
//! twice, and counts not yet committed stay pending (bounded by the inventory's
//! `max_entries`) until the database is back.

mod batch;
mod connect;
mod report;
mod schema;
mod sync;

pub use connect::parse_url;
pub use report::fleet_records;
pub use sync::FleetSink;

/// This gateway's default name in the fleet: the host name (in Kubernetes, the pod name).
pub fn default_gateway_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "certgate".to_string())
}
