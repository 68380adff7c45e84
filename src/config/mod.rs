//! The TOML configuration as operators write it (see `config/certgate.toml` for every key).
//!
//! These structs are the *raw* form: they mirror the file one to one, reject unknown keys, and
//! carry no meaning beyond types. `Snapshot::build` (in `state`) compiles them into runtime
//! values that cannot represent an invalid state.

mod api_keys;
mod client_auth;
mod defaults;
mod limits;
mod owners;
mod raw;
mod routes;
mod tokens;

pub use api_keys::*;
pub use client_auth::*;
pub use limits::*;
pub use owners::*;
pub use raw::*;
pub use routes::*;
pub use tokens::*;

use std::path::{Path, PathBuf};

/// Environment variable consulted when `--config` is not given.
pub const CONFIG_ENV: &str = "CERTGATE_CONFIG";

/// A configuration problem, always naming the file, and for invalid values the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

/// A TOML error, plus how to write the value when it is a duration or a size (serde's own
/// message only says what it expected).
fn with_format_hint(message: &str) -> String {
    let hint = if message.contains("expected a duration") {
        " (write a duration like \"500ms\", \"30s\", \"5m\", \"1h\" or \"7d\")"
    } else if message.contains("ByteSize") || message.contains("byte size") {
        " (write a size like \"64KiB\", \"10MiB\" or \"1GiB\")"
    } else {
        ""
    };
    format!("{message}{hint}")
}

/// Parses a TOML file (the config, or a file it names); errors name `path`, the line and column.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
        file: path.to_path_buf(),
        message: with_format_hint(e.to_string().trim_end()),
    })
}

/// A parsed config file together with where it came from.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub raw: RawConfig,
}

impl ConfigFile {
    /// Reads and parses `path`. Errors name the file and, for TOML errors, line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw = parse_toml(path, text)?;
        Ok(Self {
            path: path.to_path_buf(),
            raw,
        })
    }

    /// Resolves a path from the file relative to the config file's own directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// An [`ConfigError::Invalid`] for this file.
    pub fn invalid(&self, key: impl Into<String>, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.clone(),
            key: key.into(),
            problem: problem.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use defaults::default_admin_bind;
    use std::time::Duration;

    const MINIMAL: &str = r#"
[listener]
bind = "127.0.0.1:8443"
cert = "server.pem"
key = "server-key.pem"

[client_auth]
mode = "require"
trust_store = ["ca.pem"]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let f = ConfigFile::parse(Path::new("/etc/certgate/certgate.toml"), MINIMAL).unwrap();
        assert_eq!(f.raw.admin.bind, default_admin_bind());
        assert_eq!(f.raw.listener.drain_timeout, Duration::from_secs(30));
        assert_eq!(f.raw.client_auth.stale_crl, StaleCrl::Deny);
        assert_eq!(
            f.resolve(Path::new("server.pem")),
            PathBuf::from("/etc/certgate/server.pem")
        );
        assert_eq!(f.resolve(Path::new("/abs.pem")), PathBuf::from("/abs.pem"));
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let text = format!("{MINIMAL}\n[admin]\nbindd = \"127.0.0.1:1\"\n");
        let err = ConfigFile::parse(Path::new("c.toml"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml: "), "{msg}");
        assert!(msg.contains("bindd"), "{msg}");
        assert!(msg.contains("line 12"), "{msg}");
    }

    /// The documented reference must stay loadable: every key in it is one the code knows.
    #[test]
    fn reference_config_parses() {
        let text = include_str!("../../config/certgate.toml");
        let f = ConfigFile::parse(Path::new("config/certgate.toml"), text).unwrap();
        assert_eq!(f.raw.routes.len(), 2);
        assert!(f.raw.routes[0].timeout.is_some());
        assert_eq!(f.raw.client_auth.revocation_scope, RevocationScope::Chain);
        assert_eq!(f.raw.log.format, LogFormat::Auto);
        // Keys shown commented out (so the file runs as is after certs/README.md) parse too.
        let uncommented = text
            .replace("# path = \"/var", "path = \"/var")
            .replace("# host = ", "host = ")
            .replace("# client_cert = ", "client_cert = ")
            .replace("# client_key = ", "client_key = ")
            .replace("# redis_url = ", "redis_url = ")
            .replace("# file = \"owners.toml\"", "file = \"owners.toml\"")
            .replace("# postgres = ", "postgres = ")
            .replace("# gateway_id = ", "gateway_id = ");
        let g = ConfigFile::parse(Path::new("config/certgate.toml"), &uncommented).unwrap();
        assert!(g.raw.inventory.path.is_some());
        assert!(g.raw.limits.redis_url.is_some());
        assert!(g.raw.owners.file.is_some());
        assert!(g.raw.inventory.postgres.is_some());
        assert!(g.raw.inventory.gateway_id.is_some());
        assert_eq!(f.raw.owners, RawOwners::default());
        assert_eq!(f.raw.limits, RawLimits::default());
        assert_eq!(f.raw.anomaly, RawAnomaly::default());
        assert!(g.raw.routes[0].host.is_some());
        assert!(g.raw.upstreams["ledger"].client_key.is_some());
        assert_eq!(
            f.raw.upstreams["ledger"].endpoints.as_ref().map(Vec::len),
            Some(2)
        );
        assert!(f.raw.upstreams["ledger"].health_check.is_some());
        assert_eq!(f.raw.routes[0].max_request_body.as_u64(), 100 * 1024 * 1024);
        assert!(f.raw.reload.watch);
        assert_eq!(f.raw.expiry.warning_window, Duration::from_secs(7 * 86400));
    }
}
