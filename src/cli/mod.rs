//! Subcommands: `run`, `check`, `explain`, `demo`.

mod demo;
mod explain;
mod inventory;
mod token;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use certgate::authn::token::JwksSource;
use certgate::config::{CONFIG_ENV, LogFormat};
use certgate::state::Registries;
use certgate::state::snapshot::Snapshot;
use certgate::telemetry::{Telemetry, init_logging};
use certgate::util::time::{fmt_time, unix_now};

#[derive(Parser, Debug)]
#[command(
    name = "certgate",
    version,
    about = "mTLS-enforcing reverse proxy gateway"
)]
struct Cli {
    /// Log format for `run` and `demo` (overrides `[log].format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve with the given config.
    Run {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Load and validate everything the config references; print a summary.
    Check {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Show which route a request matches and whether a certificate is allowed, and why.
    Explain {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// Client certificate (PEM, leaf first, optionally followed by intermediates).
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        host: Option<String>,
        /// An access token (JWT) for the route's token check, or @FILE to read it from a file.
        #[arg(long)]
        token: Option<String>,
    },
    /// The credential report: every client certificate the gateway saw, with its owner, state,
    /// expiry and use, from the saved inventory (the gateway need not run).
    Inventory {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        source: inventory::Source,
        #[arg(long, value_enum, default_value_t)]
        format: certgate::inventory::Format,
        /// Only certificates no owner entry matches.
        #[arg(long)]
        unowned: bool,
        /// Only certificates expiring (or expired) within this long, e.g. 30d.
        #[arg(long, value_parser = humantime::parse_duration)]
        expiring: Option<std::time::Duration>,
        /// Only certificates valid for longer than their owner's max_lifetime.
        #[arg(long)]
        lifetime_violations: bool,
        /// Only certificates not seen for at least this long, e.g. 30d.
        #[arg(long, value_parser = humantime::parse_duration)]
        unused: Option<std::time::Duration>,
        /// Only certificates that called this route.
        #[arg(long)]
        route: Option<String>,
    },
    /// Run a throwaway PKI, an echo upstream and the gateway on localhost.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8443")]
        bind: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_bind: SocketAddr,
        /// Keep the generated files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Exit codes: 0 ok/allowed, 1 error, 3 `explain` says the request is refused.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config, cli.log_format),
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            cert,
            method,
            path,
            host,
            token,
        } => explain::explain(
            &config,
            explain::Request {
                cert: cert.as_deref(),
                method: &method,
                path: &path,
                host: host.as_deref(),
                token: token.as_deref(),
            },
        ),
        Command::Inventory {
            config,
            source,
            format,
            unowned,
            expiring,
            lifetime_violations,
            unused,
            route,
        } => {
            let secs = |d: std::time::Duration| d.as_secs().min(i64::MAX as u64) as i64;
            let filter = certgate::inventory::Filter {
                unowned,
                expiring_within_secs: expiring.map(secs),
                lifetime_violations,
                unused_for_secs: unused.map(secs),
                route,
            };
            inventory::inventory(
                &config,
                &inventory::Options {
                    source,
                    format,
                    filter,
                },
            )
        }
        Command::Demo {
            bind,
            admin_bind,
            dir,
        } => {
            let _log = init_logging("info", cli.log_format.unwrap_or_default());
            report(runtime().and_then(|rt| rt.block_on(demo::run(bind, admin_bind, dir))))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Path, log_format: Option<LogFormat>) -> ExitCode {
    let file = match certgate::config::ConfigFile::load(config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = Arc::new(Telemetry::new(file.raw.inventory.max_entries));
    let registries = Registries::default();
    let snapshot = match Snapshot::build(&file, &telemetry, &registries) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _log = init_logging(
        &snapshot.log.level,
        log_format.unwrap_or(snapshot.log.format),
    );
    report(runtime().and_then(|rt| {
        rt.block_on(async {
            let bound = certgate::runtime::Bound::bind(snapshot, telemetry, registries).await?;
            bound.serve(certgate::runtime::shutdown_signal()).await
        })
    }))
}

/// Loads a config for the read-only commands, with throwaway telemetry.
fn load_for_inspection(config: &Path) -> Result<Snapshot, certgate::config::ConfigError> {
    Snapshot::load(config, &Telemetry::new(1), &Registries::default())
}

fn check(config: &Path) -> ExitCode {
    match load_for_inspection(config) {
        Ok(s) => {
            print!("{}", summary(&s));
            // An unusable CRL does not stop the gateway (its CA's clients are refused), but it
            // is an error to fix: check fails.
            for p in &s.crl_checks.problems {
                eprintln!("error: {p}");
            }
            // check does not fetch: a URL not fetched yet is fetched by the gateway at start.
            for p in &s.crl_checks.pending {
                eprintln!("warning: {p}");
            }
            if s.crl_checks.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The one-screen summary `check` prints.
pub fn summary(s: &Snapshot) -> String {
    let mut o = String::new();
    let now = unix_now();
    let _ = writeln!(o, "config OK: {}", s.config_path.display());
    let _ = writeln!(o, "listener   {} (TLS 1.2/1.3, ALPN h2, http/1.1)", s.bind);
    let _ = writeln!(
        o,
        "server     {} (expires {}, {} days)",
        s.server_cert.subject,
        fmt_time(s.server_cert.not_after),
        (s.server_cert.not_after - now) / 86400
    );
    let _ = writeln!(o, "client_auth mode = {}", s.client_auth_mode.as_str());
    for c in &s.trust_anchors {
        let _ = writeln!(
            o,
            "  trust    {} (expires {})",
            c.subject,
            fmt_time(c.not_after)
        );
    }
    for c in &s.intermediates {
        let _ = writeln!(
            o,
            "  inter    {} (expires {})",
            c.subject,
            fmt_time(c.not_after)
        );
    }
    for c in &s.crls {
        let _ = writeln!(
            o,
            "  crl      {} issuer {} revoked {} next update {}",
            c.source,
            c.crl.issuer,
            c.crl.revoked_count,
            c.crl.next_update.map_or_else(|| "none".into(), fmt_time)
        );
    }
    for r in &s.remote_crls {
        let _ = writeln!(
            o,
            "  crl url  {} every {} (cache {})",
            r.source,
            humantime::format_duration(r.definition.refresh),
            r.definition.cache.display()
        );
    }
    let _ = writeln!(o, "admin      {}", s.admin_bind);
    for u in &s.upstreams {
        let _ = writeln!(
            o,
            "upstream   {} -> {} ({}, {}, timeout {})",
            u.name,
            u.endpoint_list(),
            u.protocol.as_str(),
            u.lb.as_str(),
            humantime::format_duration(u.timeout)
        );
    }
    for i in &s.token_issuers {
        let keys = i.keys.load();
        let source = match &i.source {
            JwksSource::File(p) => format!("{} ({} keys)", p.display(), keys.keys.len()),
            JwksSource::Url(u) => format!("{u} (fetched when serving)"),
        };
        let _ = writeln!(
            o,
            "issuer     {} iss {} aud {} jwks {} algs {:?}{}",
            i.name,
            i.issuer,
            i.audiences.join(","),
            source,
            i.algorithms,
            if i.require_binding {
                ", binding required"
            } else {
                ", unbound tokens accepted"
            }
        );
    }
    if s.owners.configured {
        let _ = writeln!(
            o,
            "owners     {} owner(s) (unowned: {}, lifetime_violation: {})",
            s.owners.list.len(),
            s.owners.unowned.as_str(),
            s.owners.lifetime_violation.as_str()
        );
    }
    if let Some(b) = &s.limit_backend {
        let _ = writeln!(
            o,
            "limits     redis {} (on error: {}, timeout {})",
            b.shown,
            s.limits.on_backend_error.as_str(),
            humantime::format_duration(s.limits.backend_timeout)
        );
    }
    for r in s.routes.routes() {
        let methods = r.methods().map_or_else(
            || "*".to_string(),
            |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        );
        let _ = writeln!(
            o,
            "route      {:<20} {} {}{} -> {} (allow {}, deny {}{}{}{}{})",
            r.name,
            methods,
            r.host().unwrap_or(""),
            r.path_prefix(),
            s.upstreams.get(r.upstream).map_or("?", |u| u.name.as_str()),
            r.allow.len(),
            r.deny.len(),
            if r.allow_unauthenticated {
                ", unauthenticated allowed"
            } else {
                ""
            },
            r.rate_limit_spec
                .as_ref()
                .map(|l| format!(
                    ", rate {}/{} burst {} per {}",
                    l.requests,
                    humantime::format_duration(l.per),
                    l.burst,
                    l.key.as_str()
                ))
                .unwrap_or_default(),
            r.quota_spec
                .as_ref()
                .map(|q| format!(
                    ", quota{}{} per {} per {}",
                    q.requests
                        .map(|n| format!(" {n} requests"))
                        .unwrap_or_default(),
                    q.bytes
                        .map(|b| format!(" {}", bytesize::ByteSize(b)))
                        .unwrap_or_default(),
                    humantime::format_duration(q.per),
                    q.key.as_str()
                ))
                .unwrap_or_default(),
            r.token
                .as_ref()
                .map(|t| format!(
                    ", token from {}{}",
                    s.token_issuers
                        .get(t.issuer)
                        .map_or("?", |i| i.name.as_str()),
                    if t.scopes.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", t.scopes.join(" "))
                    }
                ))
                .unwrap_or_default()
        );
    }
    for w in &s.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}
