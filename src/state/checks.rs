//! Settings that are checked, not compiled: ranges, the log filter, the header strip list.
//! `check` and going live run the same checks ([`super::Snapshot::build`]).

use crate::config::{ConfigError, ConfigFile};

/// `log.level`: a level, or a filter whose every directive names one (`certgate=debug,info`).
/// A word that is neither would be read as a target name and log everything from it, and a
/// filter the subscriber refuses used to be replaced by `info` silently when going live.
fn check_log_level(file: &ConfigFile) -> Result<(), ConfigError> {
    let level = file.raw.log.level.trim();
    let is_level = |s: &str| {
        s.trim()
            .parse::<tracing::level_filters::LevelFilter>()
            .is_ok()
    };
    let directives_ok = !level.is_empty()
        && level.split(',').all(|d| {
            d.rsplit_once('=').map_or_else(
                || is_level(d),
                |(target, lvl)| !target.trim().is_empty() && is_level(lvl),
            )
        });
    if !directives_ok || tracing_subscriber::EnvFilter::try_new(level).is_err() {
        return Err(file.invalid(
            "log.level",
            format!(
                "{level:?} is not a level (trace, debug, info, warn, error, off) or a filter of \
                 TARGET=LEVEL directives (e.g. \"certgate=debug,info\")"
            ),
        ));
    }
    Ok(())
}

/// Limits and settings that must be in range.
pub(super) fn check_limits(file: &ConfigFile) -> Result<(), ConfigError> {
    check_log_level(file)?;
    let raw = &file.raw;
    let l = &raw.listener;
    if l.max_request_header_bytes.as_u64() < 1024 {
        return Err(file.invalid(
            "listener.max_request_header_bytes",
            "must be at least 1 KiB",
        ));
    }
    if l.max_connections == 0 {
        return Err(file.invalid("listener.max_connections", "must be at least 1"));
    }
    if l.max_concurrent_streams == 0 {
        return Err(file.invalid("listener.max_concurrent_streams", "must be at least 1"));
    }
    if l.request_body_timeout.is_zero() {
        return Err(file.invalid("listener.request_body_timeout", "must be greater than zero"));
    }
    if raw.inventory.max_entries == 0 {
        return Err(file.invalid("inventory.max_entries", "must be at least 1"));
    }
    if raw.inventory.flush_interval.is_zero() {
        return Err(file.invalid("inventory.flush_interval", "must be greater than zero"));
    }
    if let Some(url) = &raw.inventory.postgres {
        crate::inventory::fleet::parse_url(url)
            .map_err(|e| file.invalid("inventory.postgres", e))?;
    }
    if let Some(ca) = &raw.inventory.postgres_ca {
        crate::util::pem::server_roots(Some(&file.resolve(ca)))
            .map_err(|e| file.invalid("inventory.postgres_ca", e))?;
    }
    if raw
        .inventory
        .gateway_id
        .as_deref()
        .is_some_and(|g| g.trim().is_empty())
    {
        return Err(file.invalid("inventory.gateway_id", "must not be empty"));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        return Err(file.invalid("log.level", format!("{:?}: {e}", raw.log.level)));
    }
    Ok(())
}

/// `listener.strip_request_headers` as lower-case header names; the headers certgate itself
/// needs to frame and route a request cannot be listed.
pub(super) fn compile_strip_list(file: &ConfigFile) -> Result<Vec<http::HeaderName>, ConfigError> {
    file.raw
        .listener
        .strip_request_headers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let key = format!("listener.strip_request_headers[{i}]");
            let n = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| file.invalid(&key, format!("{name:?} is not a header name")))?;
            if [
                http::header::HOST,
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
            ]
            .contains(&n)
            {
                return Err(file.invalid(&key, format!("{name:?} is needed to frame the request")));
            }
            Ok(n)
        })
        .collect()
}
