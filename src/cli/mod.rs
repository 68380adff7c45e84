//! Subcommands: `run`, `check`, `explain`, `inventory`, `keys`, `demo`.

mod demo;
mod explain;
mod inventory;
mod keys;
mod summary;
mod token;

use summary::summary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use certgate::config::{CONFIG_ENV, LogFormat};
use certgate::state::Registries;
use certgate::state::snapshot::Snapshot;
use certgate::telemetry::{Telemetry, init_logging};

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
    /// The register of every credential: client certificates the gateway saw, API keys and
    /// upstream credentials the config names, token clients and token signing keys seen on
    /// verified tokens, with owner, state, expiry and use, from the saved inventory (the
    /// gateway need not run).
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
        /// Only credentials of this kind.
        #[arg(long, value_enum)]
        kind: Option<certgate::inventory::Kind>,
        /// The API-key migration report: each key's owner, uses in the last 30 days, last use,
        /// days to its sunset, and whether its owner already uses a certificate.
        #[arg(long)]
        migration: bool,
    },
    /// Legacy API keys: issue one (shown once, stored as a hash), import one, list them.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Issue a key: printed once on stdout; the keys file gets its hash.
    New {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        #[command(flatten)]
        record: KeyRecordArgs,
    },
    /// Import an existing legacy key read from stdin (stored as argon2id).
    Import {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        #[command(flatten)]
        record: KeyRecordArgs,
    },
    /// The keys file's records, without their hashes.
    List {
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct KeyRecordArgs {
    /// Who holds the key (an owner of the owners file, to cut them over to certificates).
    #[arg(long)]
    owner: String,
    /// The day the key stops working (YYYY-MM-DD, UTC).
    #[arg(long)]
    sunset: String,
    /// The routes (names, comma-separated) the key may call.
    #[arg(long)]
    routes: String,
    /// reject_if_cert_seen: the key stops working once its owner has used a certificate.
    #[arg(long, value_enum, default_value = "none")]
    cutover: CutoverArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CutoverArg {
    None,
    RejectIfCertSeen,
}

impl KeyRecordArgs {
    fn new_key(&self) -> keys::NewKey<'_> {
        keys::NewKey {
            owner: &self.owner,
            sunset: &self.sunset,
            routes: &self.routes,
            cutover: match self.cutover {
                CutoverArg::None => certgate::config::Cutover::None,
                CutoverArg::RejectIfCertSeen => certgate::config::Cutover::RejectIfCertSeen,
            },
        }
    }
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
            kind,
            migration,
        } => {
            let secs = |d: std::time::Duration| d.as_secs().min(i64::MAX as u64) as i64;
            let filter = certgate::inventory::Filter {
                unowned,
                expiring_within_secs: expiring.map(secs),
                lifetime_violations,
                unused_for_secs: unused.map(secs),
                route,
                kind,
            };
            inventory::inventory(
                &config,
                &inventory::Options {
                    source,
                    format,
                    filter,
                    migration,
                },
            )
        }
        Command::Keys { command } => match command {
            KeysCommand::New { config, record } => keys::new(&config, &record.new_key()),
            KeysCommand::Import { config, record } => keys::import(&config, &record.new_key()),
            KeysCommand::List { config } => keys::list(&config),
        },
        Command::Demo {
            bind,
            admin_bind,
            dir,
        } => {
            let _log = match init_logging("info", cli.log_format.unwrap_or_default()) {
                Ok(guard) => guard,
                Err(e) => return report(Err(e)),
            };
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
    let _log = match init_logging(
        &snapshot.telemetry.log.level,
        log_format.unwrap_or(snapshot.telemetry.log.format),
    ) {
        Ok(guard) => guard,
        Err(e) => return report(Err(e)),
    };
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
    let s = match load_for_inspection(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("config has errors: {}", config.display());
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary(&s));
    // check does not fetch: a URL not fetched yet is fetched by the gateway at start.
    for p in s
        .tls
        .crl_checks
        .unfetched
        .iter()
        .chain(&s.tls.crl_checks.pending)
    {
        eprintln!("warning: {p}");
    }
    // An unusable CRL does not stop the gateway (its CA's clients are refused), but it is an
    // error to fix: one verdict, and `config OK` only when nothing is an error.
    for p in &s.tls.crl_checks.problems {
        eprintln!("error: {p}");
    }
    if s.tls.crl_checks.problems.is_empty() {
        println!("config OK: {}", s.config_path.display());
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "config has errors ({}): {}",
            s.tls.crl_checks.problems.len(),
            s.config_path.display()
        );
        ExitCode::FAILURE
    }
}
