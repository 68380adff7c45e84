//! The TLS handshake and what follows it once per connection: re-verification of resumed
//! sessions, the shared client identity, the inventory sighting, and the refusal log.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use crate::authn::identity::ClientIdentity;
use crate::authn::tls::{self, HandshakeResult};
use crate::http::ConnContext;
use crate::state::{Gateway, Snapshot};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::Limit;
use crate::util::text::{LOG_FIELD_MAX, bounded};
use crate::util::time::{coarse_unix_now, fmt_time, unix_now};

/// The TLS handshake, the client certificate checks and the connection's context; `None` when
/// the connection was refused (counted and logged here).
pub(super) async fn establish(
    gateway: &Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Box<TlsStream<TcpStream>>, Arc<ConnContext>, Arc<Snapshot>)> {
    let telemetry = &gateway.telemetry;
    let metrics = &telemetry.metrics;
    let _ = tcp.set_nodelay(true);
    // The connection's TLS settings and limits come from the snapshot current at accept;
    // each request then reads the snapshot current at its start.
    let snapshot = gateway.current.load_full();
    let acceptor = TlsAcceptor::from(snapshot.tls.server_config.clone());
    let handshake = tokio::time::timeout(
        snapshot.listener.handshake_timeout,
        acceptor.accept(tcp).into_fallible(),
    );
    let (accepted, refused_leaf) = tls::capture_refused_leaf(handshake).await;
    let tls = match accepted {
        Err(_) => {
            metrics.handshake(HandshakeResult::Other);
            metrics.limit_hit(Limit::HandshakeTimeout);
            debug!(target: "certgate::tls", client = %peer, "tls handshake timed out");
            return None;
        }
        Ok(Err((e, tcp))) => {
            let result = HandshakeResult::classify_io(&e);
            metrics.handshake(result);
            log_refused_handshake(telemetry, peer, result, &e, refused_leaf.as_deref());
            linger(tcp).await;
            return None;
        }
        Ok(Ok(s)) => s,
    };
    let verified = client_identity(gateway, &snapshot, &tls, peer)?;
    let identity = verified.as_ref().map(|(id, _)| &**id);
    metrics.handshake(HandshakeResult::Ok);
    let entry = identity.map(|id| {
        let (entry, evicted) = telemetry.inventory.observe(id, unix_now());
        metrics.inventory_evictions.inc_by(evicted);
        entry
    });
    debug!(
        target: "certgate::tls",
        client = %peer,
        subject = identity.map(|i| i.subject.as_str()),
        sha256 = identity.map(|i| i.sha256_hex.as_str()),
        "tls handshake ok"
    );

    let ctx = Arc::new(ConnContext::new(
        gateway.clone(),
        &snapshot,
        verified,
        entry,
        peer,
    ));
    Some((Box::new(tls), ctx, snapshot))
}

/// The client's verified identity (shared by its connections) and the intermediates it sent;
/// `None` inside for a client without a certificate. `None` outside: refuse the connection (a
/// resumed session whose certificate no longer verifies, or a leaf that cannot be read).
fn client_identity(
    gateway: &Gateway,
    snapshot: &Snapshot,
    tls: &TlsStream<TcpStream>,
    peer: SocketAddr,
) -> Option<Option<(Arc<ClientIdentity>, Vec<CertificateDer<'static>>)>> {
    let metrics = &gateway.telemetry.metrics;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Some(None);
    };
    // rustls restores a resumed session's client chain without verifying it again: verify it
    // here, so a certificate revoked or expired since the first handshake cannot resume.
    if resumed
        && let Err(refusal) = tls::verify_chain(&*snapshot.tls.client_verifier, leaf, intermediates)
    {
        metrics.handshake(refusal.result);
        let result = refusal.result;
        let err = std::io::Error::other(refusal.error);
        log_refused_handshake(&gateway.telemetry, peer, result, &err, Some(leaf.as_ref()));
        return None;
    }
    let id = match gateway.identities.get_or_parse(leaf.as_ref()) {
        Ok(id) => id,
        Err(e) => {
            // The verifier accepted it, so this is unexpected; refuse rather than guess.
            metrics.handshake(HandshakeResult::BadCertificate);
            warn!(target: "certgate::tls", client = %peer, reason = %e, "verified certificate could not be parsed; closing");
            return None;
        }
    };
    // The leaf is held once per certificate by the shared identity; only intermediates the
    // client sent are kept per connection.
    let intermediates = intermediates
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    Some(Some((id, intermediates)))
}

/// Closes a refused connection so that the client reads the alert: a client that already sent
/// more (TLS 1.3 clients send their first request right after their Finished) would otherwise
/// get a reset, and the reset discards the alert it has not read yet. The write side is shut
/// (FIN after the alert), then what the client still sends is read and dropped, for a bounded
/// time and amount (nginx's lingering close).
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_BYTES: usize = 64 << 10;
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut left = MAX_BYTES;
    let _ = tokio::time::timeout(MAX_TIME, async {
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// One debug event per refused handshake, with what can be read of the refused certificate
/// (client-controlled strings bounded); at WARN only the first after a quiet minute (the rest
/// are summarised once a minute, see [`crate::telemetry::refusals`]).
fn log_refused_handshake(
    telemetry: &Telemetry,
    peer: SocketAddr,
    result: HandshakeResult,
    err: &std::io::Error,
    leaf: Option<&[u8]>,
) {
    let presented = leaf.and_then(|der| ClientIdentity::from_der(der).ok());
    let p = presented.as_ref();
    let field = |s: &'_ str| bounded(s, LOG_FIELD_MAX).into_owned();
    let subject = p.map(|i| field(&i.subject));
    let issuer = p.map(|i| field(&i.issuer));
    let serial = p.map(|i| field(&i.serial));
    let not_after = p.map(|i| fmt_time(i.not_after));
    let sha256 = p.map(|i| i.sha256_hex.as_str());
    debug!(
        target: "certgate::tls",
        client = %peer,
        result = result.label(),
        reason = %err,
        client_sha256 = sha256,
        client_subject = subject.as_deref(),
        client_issuer = issuer.as_deref(),
        client_serial = serial.as_deref(),
        client_not_after = not_after.as_deref(),
        "tls handshake refused"
    );
    if telemetry.refusals.note(result, coarse_unix_now()) {
        warn!(
            target: "certgate::tls",
            client = %peer,
            result = result.label(),
            reason = %err,
            client_subject = subject.as_deref(),
            "tls handshake refused (further refusals this minute are summarised)"
        );
    }
}
