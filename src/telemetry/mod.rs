//! Process-wide observation state (metrics and the credential inventory) and log setup.

pub mod anomaly;
pub mod log_queue;
pub mod metrics;
pub mod refusals;

use crate::config::LogFormat;
use crate::inventory::Inventory;
use crate::telemetry::anomaly::Anomalies;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::refusals::Refusals;

/// Everything that observes traffic and outlives config reloads.
pub struct Telemetry {
    pub metrics: Metrics,
    pub inventory: Inventory,
    /// Refused handshakes, for the once-a-minute WARN summary.
    pub refusals: Refusals,
    /// Per-identity traffic patterns behind the anomaly signals.
    pub anomalies: Anomalies,
}

impl Telemetry {
    pub fn new(inventory_max_entries: usize) -> Self {
        let metrics = Metrics::new();
        Self {
            anomalies: Anomalies::new(&metrics),
            metrics,
            inventory: Inventory::new(inventory_max_entries),
            refusals: Refusals::default(),
        }
    }

    /// Refreshes the gauges derived from the inventory (called when /metrics is scraped);
    /// `expiring_secs` is the window of the `expiring` state.
    pub fn refresh_inventory_gauges(&self, now: i64, expiring_secs: i64) {
        let inv = &self.inventory;
        self.metrics
            .set_credentials(inv.credential_counts(now, expiring_secs));
        self.metrics.inventory_identities.set(inv.len() as i64);
        for (label, days) in [("1d", 1), ("7d", 7), ("30d", 30)] {
            self.metrics
                .client_certs_expiring
                .with_label_values(&[label])
                .set(inv.expiring_within(now, days * 86400) as i64);
        }
    }
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Log lines that may wait for the writer thread: about a second of access log at 30,000
/// requests per second. The queue takes memory only for the lines in it.
const LOG_QUEUE_LINES: usize = 32_768;

/// Installs the global tracing subscriber.
///
/// Level: `RUST_LOG` if set, else `level` (from `[log].level`, changeable by reload). Format:
/// `format`, where `auto` means JSON lines unless stdout is a terminal. Log lines are written by a
/// background thread so the request path never blocks on stdout ([`log_queue`]); when
/// [`LOG_QUEUE_LINES`] are queued, writers wait rather than drop (the access log is an audit
/// trail). Keep the returned guard alive until exit: dropping it flushes what is queued. Fails
/// only if the writer thread cannot be started.
pub fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<log_queue::LogGuard> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let tty = std::io::stdout().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !tty,
    };
    let (writer, guard) = log_queue::LogQueue::new(std::io::stdout(), LOG_QUEUE_LINES)
        .map_err(|e| anyhow::anyhow!("cannot start the log writer thread: {e}"))?;
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer.clone())
    });
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(tty)
            .with_writer(writer)
    });
    if tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
        .try_init()
        .is_ok()
    {
        let _ = LOG_FILTER.set(handle);
    }
    Ok(guard)
}

/// Applies `[log].level` from a reloaded config. `RUST_LOG`, when set, keeps precedence.
pub fn set_log_level(level: &str) -> Result<(), LogLevelError> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(());
    }
    let Some(handle) = LOG_FILTER.get() else {
        return Ok(());
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level)?;
    Ok(handle.reload(filter)?)
}

/// Why `[log].level` could not be applied to the running subscriber.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    #[error("not a log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("the log filter cannot be replaced: {0}")]
    Reload(#[from] tracing_subscriber::reload::Error),
}
