//! Metrics registry and log setup.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::tls::HandshakeResult;

/// Process-wide metrics. Label values are bounded: route names from config, fixed enums.
pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub authz_decisions_total: IntCounterVec,
    handshakes: Vec<IntCounter>,
    pub active_connections: IntGauge,
}

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new(
                "certgate_requests_total",
                "Requests answered, by route, method and status code.",
            ),
            &["route", "method", "code"],
        )
        .expect("static metric definition");
        let authz_decisions_total = IntCounterVec::new(
            Opts::new(
                "certgate_authz_decisions_total",
                "Authorisation decisions by route and decision.",
            ),
            &["route", "decision"],
        )
        .expect("static metric definition");
        let tls = IntCounterVec::new(
            Opts::new("certgate_tls_handshakes_total", "TLS handshakes by result."),
            &["result"],
        )
        .expect("static metric definition");
        let active_connections =
            IntGauge::new("certgate_active_connections", "Open client connections.")
                .expect("static metric definition");
        for c in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(authz_decisions_total.clone()),
            Box::new(tls.clone()),
            Box::new(active_connections.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Pre-resolve every handshake label so all results show up from the start, at 0.
        let handshakes = HandshakeResult::ALL
            .iter()
            .map(|r| tls.with_label_values(&[r.label()]))
            .collect();
        Self {
            registry,
            requests_total,
            authz_decisions_total,
            handshakes,
            active_connections,
        }
    }

    pub fn handshake(&self, result: HandshakeResult) {
        if let Some(c) = HandshakeResult::ALL
            .iter()
            .position(|r| *r == result)
            .and_then(|i| self.handshakes.get(i))
        {
            c.inc();
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bounded `method` label: the standard methods, everything else `OTHER`.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON lines, unless stdout is a terminal.
    Auto,
    Json,
    Text,
}

/// Installs the global tracing subscriber. Level from `RUST_LOG` (default `info`).
///
/// Log lines are written by a background thread so the request path never blocks on stdout;
/// when 128k lines are queued, writers wait rather than drop (the access log is an audit trail).
/// Keep the returned guard alive until exit: dropping it flushes what is queued.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
    };
    guard
}
