//! What a running gateway holds, in DESIGN's two kinds: the current [`Snapshot`] (everything
//! compiled from the config, immutable, swapped whole on reload) and the live state that
//! outlives snapshots (upstream endpoints, shared client identities, telemetry), reconciled by
//! name on each reload.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::authn::identity::IdentityCache;
use crate::authn::token::remote::JwksRegistry;
use crate::limits::registry::LimitRegistry;
use crate::telemetry::Telemetry;
use crate::upstream::registry::UpstreamRegistry;

pub mod admin;
pub mod api_keys;
mod build;
mod checks;
pub mod crls;
mod issuers;
mod owners;
mod register;
pub mod snapshot;
pub mod trust;

pub use snapshot::Snapshot;

/// The owners file `[owners]` names, compiled (for `certgate inventory`, which needs no more
/// of the config than that and `[inventory]`).
pub fn load_owners(
    file: &crate::config::ConfigFile,
) -> Result<crate::authz::owners::Owners, crate::config::ConfigError> {
    owners::compile_owners(file)
}

/// The live registries a snapshot is compiled against: what outlives snapshots and is
/// reconciled by name on each reload.
#[derive(Default)]
pub struct Registries {
    /// Upstream endpoints with their pools, health and ejection state.
    pub upstreams: UpstreamRegistry,
    /// Token issuers' keys fetched from URLs.
    pub jwks: JwksRegistry,
    /// Routes' rate limiters and their counters.
    pub limits: LimitRegistry,
    /// The last good CRL of each source, and the last verification of each CRL file.
    pub crls: crls::CrlRegistry,
    /// OCSP answers cached per certificate, and responder connections.
    pub ocsp: crate::authn::revocation::ocsp::OcspCache,
    /// CRL URLs and their fetch tasks.
    pub crl_urls: crate::authn::revocation::remote::CrlUrlRegistry,
    /// Access tokens the gateway obtained for upstreams.
    pub upstream_credentials: crate::upstream::credentials::CredentialRegistry,
}

impl Registries {
    /// Makes every registry hold what `new` uses, and nothing else: the one place a snapshot
    /// going live reconciles the live state (called by [`crate::runtime::activate`]).
    pub fn reconcile(&self, new: &Snapshot) {
        self.upstreams.adopt(&new.routing.upstreams);
        self.jwks.adopt(new.remote_jwks());
        self.upstream_credentials.adopt(
            new.routing
                .upstream_credentials
                .iter()
                .flatten()
                .map(|c| &**c),
        );
        self.crls.adopt(&new.tls.crls);
        self.crl_urls
            .adopt(new.tls.remote_crls.iter(), &new.tls.client_cas);
        let routes = new.routing.routes.routes();
        self.limits.adopt(
            routes
                .iter()
                .filter_map(|r| Some((r.name.as_str(), r.rate_limit.as_ref()?))),
            routes
                .iter()
                .filter_map(|r| Some((r.name.as_str(), r.quota.as_ref()?))),
            new.limits.backend.as_ref(),
        );
    }
}

/// State shared by the listeners: the current snapshot, metrics, readiness.
pub struct Gateway {
    pub current: ArcSwap<Snapshot>,
    pub telemetry: Arc<Telemetry>,
    pub ready: AtomicBool,
    /// Where reload requests go (SIGHUP, `POST /reload`, file changes).
    pub reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// The live state snapshots are compiled against, kept across reloads.
    pub registries: Registries,
    /// Client identities shared by the connections that present the same certificate.
    pub identities: IdentityCache,
    /// Open connections per source IP and per certificate.
    pub conn_caps: crate::limits::conns::ConnCaps,
    /// The generation of each snapshot swapped in, for what must re-check itself on a reload
    /// without a request to trigger it (upgraded tunnels).
    pub snapshot_swaps: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Admin,
    FileChange,
    /// A CRL URL's task cached a new CRL.
    CrlFetched,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Admin => "POST /reload",
            Self::FileChange => "file change",
            Self::CrlFetched => "CRL fetched",
        }
    }
}

/// Why a reload was refused: the running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A request for a reload; `reply` gets the new generation or why the config was refused.
pub struct ReloadRequest {
    pub trigger: Trigger,
    pub reply: Option<oneshot::Sender<Result<u64, ReloadError>>>,
}
