//! Why an inventory could not be read, written, reported or synced.

use crate::util::pem::LoadError;

/// An inventory file, a report, or the fleet inventory (PostgreSQL) failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported version {0}")]
    Version(u32),
    #[error("{0}")]
    Csv(#[from] csv::Error),
    #[error("not a PostgreSQL URL: {0}")]
    Url(tokio_postgres::Error),
    #[error("no host")]
    NoHost,
    #[error(transparent)]
    Roots(#[from] LoadError),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// A database error, with its whole cause chain ("password authentication failed …").
    #[error("{context}{chain}")]
    Database {
        context: &'static str,
        chain: String,
    },
    #[error("not connected")]
    NotConnected,
}

impl InventoryError {
    /// A database error in `context` (`""`, or e.g. `"creating the schema: "`).
    pub fn database(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Self + Copy {
        move |e| Self::Database {
            context,
            chain: crate::util::text::error_chain(&e),
        }
    }
}

/// A filter parameter of `certgate inventory` or `GET /inventory` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("unknown parameter {0:?} (use unowned, expiring, lifetime_violations, unused, route)")]
    Unknown(String),
}
