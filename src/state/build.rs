//! Compiling a config file into a [`Snapshot`], step by step: the server certificate, the
//! client trust (anchors, intermediates, CRLs → verifier), upstreams (reused from the registry
//! when unchanged), routes, and the listener's limits. Every error names the file and the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::authn::tls;
use crate::authz::{Links, Route, RouteTable};
use crate::config::{
    ClientAuthMode, ConfigError, ConfigFile, LimitBackend, OnBackendError, RawInventory,
    RawUpstream,
};
use crate::limits::redis::{BackendFailure, RedisBackend};
use crate::telemetry::Telemetry;
use crate::upstream::Upstream;
use crate::upstream::registry::UpstreamRegistry;

use super::Registries;
use super::issuers::compile_issuers;
use super::snapshot::{
    AdminSettings, H2Settings, IdentitySources, LimitSettings, ListenerSettings, RouteObs, Routing,
    Snapshot, TelemetrySettings, TlsState,
};
use super::trust::{ServerCert, Trust};

impl Snapshot {
    /// Compiles a parsed config; metric handles and inventory ids come from `telemetry`.
    /// Upstreams whose definition is unchanged come from `registry` with their live state.
    pub fn build(
        file: &ConfigFile,
        telemetry: &Telemetry,
        registries: &Registries,
    ) -> Result<Self, ConfigError> {
        let raw = &file.raw;
        let mut warnings = Vec::new();
        super::checks::check_limits(file)?;
        let server = ServerCert::load(file)?;
        let trust = Trust::load(file, registries, telemetry, &mut warnings)?;
        let admin_access = super::admin::AdminAccess::compile(file, &server)?;
        let tls_config = tls::server_config(server.chain, server.key, trust.verifier.clone())
            .map_err(|e| {
                file.invalid("listener.key", format!("does not fit listener.cert: {e}"))
            })?;
        let (upstreams, upstream_ix) = compile_upstreams(file, telemetry, &registries.upstreams)?;
        let upstream_credentials = crate::upstream::credentials::compile_upstream_credentials(
            file,
            &file.raw.upstreams.keys().collect::<Vec<_>>(),
            &telemetry.metrics,
            &registries.upstream_credentials,
            &mut warnings,
        )?;
        let (token_issuers, issuer_ix) =
            compile_issuers(file, telemetry, &registries.jwks, &mut warnings)?;
        let links = Links {
            upstreams: &upstream_ix,
            issuers: &issuer_ix,
            limits: &registries.limits,
        };
        let routes = compile_routes(file, &links, &mut warnings)?;
        let owners = super::owners::compile_owners(file)?;
        let api_keys = super::api_keys::compile_api_keys(
            file,
            |name| routes.iter().any(|r| r.name == name),
            &owners,
            &mut warnings,
        )?;
        let limit_backend = compile_limit_backend(file, telemetry, registries, &mut warnings)?;
        let route_obs = routes
            .iter()
            .map(|r| RouteObs {
                metrics: telemetry.metrics.route(&r.name),
                inventory_id: telemetry.inventory.route_id(&r.name),
            })
            .collect();
        if !raw.admin.bind.ip().is_loopback() {
            warnings.push(format!(
                "admin.bind = {} is not a loopback address: /metrics and health endpoints are reachable from the network without authentication",
                raw.admin.bind
            ));
        }
        Ok(Self {
            generation: next_generation(),
            config_path: file.path.clone(),
            inputs: inputs_of(file),
            reload: raw.reload.clone(),
            listener: listener_settings(file)?,
            admin: AdminSettings {
                bind: raw.admin.bind,
                access: admin_access,
            },
            tls: TlsState {
                client_auth_mode: raw.client_auth.mode,
                server_config: Arc::new(tls_config),
                client_verifier: trust.verifier,
                server_cert: server.identity,
                trust_anchors: trust.anchors,
                intermediates: trust.intermediates,
                crls: trust.crls,
                crl_checks: trust.checks,
                remote_crls: trust.remote_crls,
                ocsp: trust.ocsp,
                client_cas: trust.cas,
            },
            routing: Routing {
                routes: RouteTable::with_case(routes, raw.listener.path_case),
                route_obs,
                upstreams,
                upstream_credentials,
            },
            identity: IdentitySources {
                token_issuers,
                owners,
                api_keys,
            },
            limits: LimitSettings {
                config: raw.limits.clone(),
                backend: limit_backend,
            },
            telemetry: telemetry_settings(file)?,
            warnings,
        })
    }
}

/// `[listener]`: the bounds of every connection and request.
fn listener_settings(file: &ConfigFile) -> Result<ListenerSettings, ConfigError> {
    let l = &file.raw.listener;
    Ok(ListenerSettings {
        bind: l.bind,
        handshake_timeout: l.handshake_timeout,
        drain_timeout: l.drain_timeout,
        shutdown_grace: l.shutdown_grace,
        header_read_timeout: l.header_read_timeout,
        max_request_header_bytes: usize::try_from(l.max_request_header_bytes.as_u64())
            .unwrap_or(usize::MAX),
        max_connections: l.max_connections,
        max_concurrent_streams: l.max_concurrent_streams,
        max_requests_per_connection: l.max_requests_per_connection,
        h2: H2Settings {
            idle_timeout: l.idle_timeout,
            keepalive_interval: (!l.h2_keepalive_interval.is_zero())
                .then_some(l.h2_keepalive_interval),
            keepalive_timeout: l.h2_keepalive_timeout,
            max_pending_accept_reset_streams: l.h2_max_pending_accept_reset_streams,
            max_local_error_reset_streams: l.h2_max_local_error_reset_streams,
            max_pings_per_second: l.h2_max_pings_per_second,
        },
        max_connections_per_identity: l
            .max_connections_per_identity
            .unwrap_or(l.max_connections.div_ceil(2)),
        max_connections_per_source_ip: l.max_connections_per_source_ip,
        request_body_timeout: l.request_body_timeout,
        strip_request_headers: super::checks::compile_strip_list(file)?,
    })
}

/// `[inventory]` (paths resolved against the config file), `[log]`, `[anomaly]`, `[expiry]`.
fn telemetry_settings(file: &ConfigFile) -> Result<TelemetrySettings, ConfigError> {
    let raw = &file.raw;
    Ok(TelemetrySettings {
        inventory: RawInventory {
            path: raw.inventory.path.as_deref().map(|p| file.resolve(p)),
            postgres_ca: raw
                .inventory
                .postgres_ca
                .as_deref()
                .map(|p| file.resolve(p)),
            ..raw.inventory.clone()
        },
        log: raw.log.clone(),
        anomaly: crate::telemetry::anomaly::AnomalySpec::compile(&raw.anomaly)
            .map_err(|(key, problem)| file.invalid(format!("anomaly.{key}"), problem))?,
        expiry_window: raw.expiry.warning_window,
    })
}

/// Compiled upstreams in name order, and each name's index among them.
type Upstreams = (Vec<Arc<Upstream>>, HashMap<String, usize>);

/// `[upstreams.NAME]`, by name, and each one's index.
fn compile_upstreams(
    file: &ConfigFile,
    telemetry: &Telemetry,
    registry: &UpstreamRegistry,
) -> Result<Upstreams, ConfigError> {
    let mut upstreams = Vec::new();
    let mut index = HashMap::new();
    for (name, u) in &file.raw.upstreams {
        let up = registry
            .resolve(name, u, file, &telemetry.metrics)
            .map_err(|(k, p)| file.invalid(format!("upstreams.{name}.{k}"), p))?;
        index.insert(name.clone(), upstreams.len());
        upstreams.push(up);
    }
    Ok((upstreams, index))
}

/// `[[routes]]` in file order, with warnings for routes that can never be reached or allow
/// nobody.
fn compile_routes(
    file: &ConfigFile,
    links: &Links<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Route>, ConfigError> {
    let mode = file.raw.client_auth.mode;
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in file.raw.routes.iter().enumerate() {
        if let Some(prev) = routes.iter().find(|p| p.name == r.name) {
            return Err(file.invalid(
                format!("routes[{i}].name"),
                format!(
                    "duplicate route name {:?} (also routes[{}])",
                    r.name, prev.index
                ),
            ));
        }
        let route = Route::compile(i, r, links)
            .map_err(|e| file.invalid(format!("routes[{i}].{}", e.key), e.problem))?;
        if let Some(earlier) = routes.iter().find(|e| route.is_shadowed_by(e)) {
            warnings.push(format!(
                "routes[{i}] ({:?}) is never reached: routes[{}] ({:?}) matches all of its requests first",
                route.name, earlier.index, earlier.name
            ));
        }
        if route.allow.is_empty() && !route.allow_unauthenticated {
            warnings.push(format!(
                "routes[{i}] ({:?}) has no allow entry and denies everyone",
                route.name
            ));
        }
        if route.api_keys && file.raw.api_keys.is_none() {
            return Err(file.invalid(
                format!("routes[{i}].api_keys"),
                "needs an [api_keys] section (file and pepper_file)",
            ));
        }
        if route.api_keys && mode == ClientAuthMode::Require {
            warnings.push(format!(
                "routes[{i}] ({:?}) sets api_keys, but keys are read only from clients without a certificate, and client_auth.mode = \"require\" admits none: set mode = \"optional\"",
                route.name
            ));
        }
        if route.allow_unauthenticated && mode == ClientAuthMode::Require {
            warnings.push(format!(
                "routes[{i}] ({:?}) sets allow_unauthenticated, which has no effect with client_auth.mode = \"require\"",
                route.name
            ));
        }
        if route.allow_unauthenticated && mode == ClientAuthMode::Optional && !r.deny.is_empty() {
            warnings.push(format!(
                "routes[{i}] ({:?}) sets allow_unauthenticated and deny: a denied client gets in anyway by not presenting its certificate; keep denied identities off this route another way (drop allow_unauthenticated, or refuse them at the network)",
                route.name
            ));
        }
        routes.push(route);
    }
    if routes.is_empty() {
        warnings.push("no routes: every request will get 404".to_string());
    }
    Ok(routes)
}

/// `[limits]`: the Redis backend (the live one when `redis_url` is unchanged), or none for the
/// local one.
fn compile_limit_backend(
    file: &ConfigFile,
    telemetry: &Telemetry,
    registries: &Registries,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<RedisBackend>>, ConfigError> {
    let l = &file.raw.limits;
    if l.backend_timeout.is_zero() {
        return Err(file.invalid("limits.backend_timeout", "must be greater than zero"));
    }
    if l.backend == LimitBackend::Local {
        return Ok(None);
    }
    if l.on_backend_error == OnBackendError::Allow {
        warnings.push(
            "limits.on_backend_error = \"allow\": while Redis is slow or down every request is allowed, so a flood that slows Redis switches the rate limits and quotas off; \"local\" (the default) keeps each gateway's own counters as an emergency limit".to_string(),
        );
    }
    let Some(url) = &l.redis_url else {
        return Err(file.invalid("limits.redis_url", "required with backend = \"redis\""));
    };
    let failures = || BackendFailure::ALL.map(|f| telemetry.metrics.limit_backend_error(f.label()));
    registries
        .limits
        .resolve_redis(url, failures)
        .map(Some)
        .map_err(|e| file.invalid("limits.redis_url", e))
}

/// The config file (as given) and every file it references (resolved against the config's
/// directory), for change detection.
fn inputs_of(file: &ConfigFile) -> Vec<PathBuf> {
    let raw = &file.raw;
    let ca = &raw.client_auth;
    let referenced = [&raw.listener.cert, &raw.listener.key]
        .into_iter()
        .chain(&ca.trust_store)
        .chain(&ca.intermediates)
        .chain(&ca.crls)
        .chain(raw.upstreams.values().flat_map(RawUpstream::files))
        .chain(
            raw.token_issuers
                .values()
                .filter_map(|t| t.jwks_ca.as_ref()),
        )
        .map(|p| file.resolve(p));
    let owners_file = raw
        .owners
        .file
        .iter()
        .chain(raw.api_keys.iter().flat_map(|k| [&k.file, &k.pepper_file]))
        .chain(
            raw.upstream_credentials
                .values()
                .flat_map(|c| [&c.value_file, &c.key, &c.cert, &c.secret_file, &c.ca])
                .flatten(),
        )
        .chain(&raw.inventory.postgres_ca)
        .chain(&raw.admin.token_file)
        .chain(&raw.admin.client_ca)
        .map(|p| file.resolve(p));
    let jwks_files = raw
        .token_issuers
        .values()
        .filter(|t| !t.jwks_is_url())
        .map(|t| file.resolve(Path::new(&t.jwks)));
    std::iter::once(file.path.clone())
        .chain(referenced)
        .chain(jwks_files)
        .chain(owners_file)
        .collect()
}

/// Monotonic snapshot numbering within this process.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
