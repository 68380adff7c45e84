//! What every request on one client connection shares: the verified identity, its inventory
//! entry, the peer, and the per-connection limits and re-verification state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use http::header::HeaderValue;
use rustls::pki_types::CertificateDer;

use crate::authn::identity::ClientIdentity;
use crate::authn::revocation::ocsp::Outcome;
use crate::authn::tls;
use crate::authn::token::cache::ConnTokenCache;
use crate::authz::authority::AuthorityCache;
use crate::http::error::NoLongerValid;
use crate::inventory;
use crate::state::Gateway;
use crate::state::snapshot::Snapshot;
use crate::telemetry::metrics::Limit;
use crate::util::time::coarse_unix_now;

/// Per-connection state shared by every request on the connection.
pub struct ConnContext {
    /// Each request reads the gateway's current snapshot once and uses it to the end.
    pub gateway: Arc<Gateway>,
    /// `None` when the client presented no certificate (optional mode).
    pub identity: Option<Arc<ClientIdentity>>,
    /// The identity's inventory entry.
    pub inventory: Option<Arc<inventory::Entry>>,
    pub peer: SocketAddr,
    /// The peer IP, preformatted for `x-forwarded-for`.
    pub(super) peer_ip: HeaderValue,
    /// The identity as the upstream is told it (`x-forwarded-client-cert`), built once per
    /// connection: a forwarding concern, not part of the identity.
    pub(super) xfcc: Option<HeaderValue>,
    /// Requests seen on this connection, for `max_requests_per_connection`.
    pub(super) requests: AtomicU64,
    /// Request bytes read from the client, and that count when the last response ended: equal
    /// means the connection sat idle between requests (see `idle_after_response`).
    pub(super) bytes_read: AtomicU64,
    pub(super) bytes_read_at_response: AtomicU64,
    pub(super) max_requests: u64,
    /// Intermediates the client presented (the leaf is in `identity`), to re-verify the chain
    /// after a reload.
    pub(super) intermediates: Vec<CertificateDer<'static>>,
    /// The snapshot generation the chain was last verified against.
    pub(super) verified_generation: AtomicU64,
    /// Signalled when the connection should close gracefully (request limit reached).
    pub close: tokio::sync::Notify,
    /// The last access token verified on this connection.
    pub(super) tokens: ConnTokenCache,
    /// The last API key verified on this connection.
    pub(super) api_keys: crate::authn::apikey::ConnKeyCache,
    /// The authority this connection's requests name, validated once.
    pub(super) authority: AuthorityCache,
    /// The certificate's owner for one snapshot generation: `generation << 16 | (index + 1)`
    /// (0 in the low bits: no owner; 0 overall: not looked up yet).
    owner_memo: AtomicU64,
    /// The certificate's OCSP outcome and until when it stands: `until << 3 | code` (0: not
    /// looked up yet).
    ocsp_memo: AtomicU64,
    /// Requests being served, and when the last one began or ended (coarse seconds): an HTTP/2
    /// connection with none for `idle_timeout` is closed.
    in_flight: AtomicU64,
    last_active: AtomicI64,
}

/// One request being served on a connection; dropped when its exchange ends, however it ends.
pub struct ActiveRequest(Arc<ConnContext>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0
            .last_active
            .store(coarse_unix_now(), Ordering::Relaxed);
    }
}

impl ConnContext {
    pub fn new(
        gateway: Arc<Gateway>,
        snapshot: &Snapshot,
        verified: Option<(Arc<ClientIdentity>, Vec<CertificateDer<'static>>)>,
        inventory: Option<Arc<inventory::Entry>>,
        peer: SocketAddr,
    ) -> Self {
        let (identity, intermediates) = match verified {
            Some((id, intermediates)) => (Some(id), intermediates),
            None => (None, Vec::new()),
        };
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            xfcc: identity.as_deref().map(crate::http::headers::xfcc),
            gateway,
            identity,
            inventory,
            peer,
            peer_ip,
            requests: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_read_at_response: AtomicU64::new(0),
            max_requests: snapshot.listener.max_requests_per_connection,
            intermediates,
            verified_generation: AtomicU64::new(snapshot.generation),
            close: tokio::sync::Notify::new(),
            tokens: ConnTokenCache::default(),
            api_keys: Default::default(),
            authority: AuthorityCache::default(),
            owner_memo: AtomicU64::new(0),
            ocsp_memo: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_active: AtomicI64::new(coarse_unix_now()),
        }
    }

    /// The index of the certificate's owner in `snapshot.owners`, looked up once per
    /// connection and snapshot; the inventory entry learns it at the same time.
    pub(super) fn owner(&self, snapshot: &Snapshot) -> Option<usize> {
        let id = self.identity.as_deref()?;
        let memo = self.owner_memo.load(Ordering::Relaxed);
        if memo != 0 && memo >> 16 == snapshot.generation {
            return (memo & 0xffff).checked_sub(1).map(|i| i as usize);
        }
        let owner = snapshot.identity.owners.owner_of(id);
        let slot = owner.map_or(0, |i| i as u64 + 1);
        if slot <= 0xffff {
            self.owner_memo
                .store(snapshot.generation << 16 | slot, Ordering::Relaxed);
        }
        let name = owner
            .and_then(|i| snapshot.identity.owners.list.get(i))
            .map(|o| o.name.clone());
        if let Some(name) = &name {
            self.gateway
                .telemetry
                .inventory
                .note_certificate_owner(name);
        }
        if let Some(entry) = &self.inventory {
            entry.set_owner(name);
        }
        owner
    }

    /// Marks a request as being served until the returned guard is dropped.
    pub(super) fn begin_request(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_active.store(coarse_unix_now(), Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// Seconds without a request in flight, as of `now` (0 while one is).
    pub fn idle_for(&self, now: i64) -> i64 {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return 0;
        }
        now - self.last_active.load(Ordering::Relaxed)
    }

    /// The OCSP outcome remembered for this connection, if it still stands at `now`.
    pub(super) fn ocsp_memo(&self, now: i64) -> Option<Outcome> {
        let memo = self.ocsp_memo.load(Ordering::Relaxed);
        if (memo >> 3) as i64 > now {
            Outcome::from_code(memo & 7)
        } else {
            None
        }
    }

    pub(super) fn remember_ocsp(&self, outcome: Outcome, until: i64) {
        self.ocsp_memo.store(
            (until.max(0) as u64) << 3 | outcome.code(),
            Ordering::Relaxed,
        );
    }

    /// Re-checks the connection's certificate against `snapshot`: expiry on every request, and
    /// chain, trust and revocation once per snapshot generation (so a CRL or trust-store reload
    /// reaches connections that stay open, resumed or not).
    pub(crate) fn revalidate(&self, snapshot: &Snapshot) -> Result<(), NoLongerValid> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if coarse_unix_now() > id.not_after {
            return Err(NoLongerValid::Expired);
        }
        if self.verified_generation.load(Ordering::Relaxed) == snapshot.generation {
            return Ok(());
        }
        tls::verify_chain(&*snapshot.tls.client_verifier, &id.der, &self.intermediates)
            .map_err(NoLongerValid::Refused)?;
        self.verified_generation
            .store(snapshot.generation, Ordering::Relaxed);
        Ok(())
    }

    /// Counts request bytes read from the client.
    pub fn note_read(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// True when at least one response was sent and nothing was read since: the connection is
    /// an idle keep-alive one, not a client sending a request head slowly.
    pub fn idle_after_response(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
            && self.bytes_read.load(Ordering::Relaxed)
                == self.bytes_read_at_response.load(Ordering::Relaxed)
    }

    /// Counts a request; on reaching the per-connection limit, asks the connection to close.
    pub(super) fn count_request(&self) {
        let limit = self.max_requests;
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if limit > 0 && n == limit {
            self.gateway
                .telemetry
                .metrics
                .limit_hit(Limit::RequestsPerConnection);
            self.close.notify_one();
        }
    }
}
