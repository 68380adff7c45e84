//! One client connection: the handshake, then HTTP/1.1 or HTTP/2 (by ALPN) with the request
//! service, until the client leaves, a limit closes it or the gateway shuts down.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::http::{self, ConnContext};
use crate::state::{Gateway, Snapshot};
use crate::telemetry::metrics::Limit;
use crate::util::text::error_chain;

use super::h2flood::FloodGuard;
use super::handshake::establish;
use super::head_timer::{PolledTimer, poll_period};
use super::io::ClientIo;

/// Decrements the active-connection gauge however the connection ends.
struct ActiveConnection(prometheus::IntGauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(super) async fn serve(
    gateway: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
    _slots: (
        OwnedSemaphorePermit,
        crate::limits::conns::Held<std::net::IpAddr>,
    ),
) {
    let telemetry = gateway.telemetry.clone();
    let metrics = &telemetry.metrics;
    metrics.active_connections.inc();
    let _active = ActiveConnection(metrics.active_connections.clone());
    // Boxed, like the connection below: a task is as large as the largest state it may be in,
    // and an idle keep-alive connection should not carry the handshake's.
    let Some((tls, ctx, snapshot)) = Box::pin(establish(&gateway, tcp, peer)).await else {
        return;
    };
    // One credential may not hold every slot of the listener.
    let _identity_slot = match &ctx.identity {
        None => None,
        Some(id) => match gateway
            .conn_caps
            .admit_identity(id.sha256, snapshot.listener.max_connections_per_identity)
        {
            Some(held) => Some(held),
            None => {
                metrics.limit_hit(Limit::ConnectionsPerIdentity);
                debug!(client = %peer, subject = %id.subject, limit = snapshot.listener.max_connections_per_identity, "connection closed: max_connections_per_identity reached");
                return;
            }
        },
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = {
        let ctx = ctx.clone();
        // Boxed so that hyper's per-connection slot for the request future stays small.
        service_fn(move |req| Box::pin(http::handle(ctx.clone(), req)))
    };
    let io = TokioIo::new(ClientIo::new(
        tls,
        ctx.clone(),
        h2.then(|| FloodGuard::new(snapshot.listener.h2.max_pings_per_second)),
    ));
    // ALPN decides the protocol, as RFC 9113 requires over TLS (and as nginx does): "h2" gets
    // HTTP/2, anything else or no ALPN at all HTTP/1.1.
    let result = if h2 {
        let conn = Box::pin(http2_builder(&snapshot).serve_connection(io, service));
        let idle = snapshot.listener.h2.idle_timeout;
        drop(snapshot);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            &stop,
            &ctx,
            poll_period(idle),
            Some((idle, metrics)),
        )
        .await
    } else {
        let conn = Box::pin(
            http1_builder(&snapshot)
                .serve_connection(io, service)
                .with_upgrades(),
        );
        // The tick polls the connection so that the header deadline of `PolledTimer` holds.
        let tick = poll_period(snapshot.listener.header_read_timeout);
        drop(snapshot);
        drive(conn, |c| c.graceful_shutdown(), &stop, &ctx, tick, None).await
    };
    let Err(e) = result else { return };
    if e.is_timeout() && ctx.idle_after_response() {
        // The header timer also runs while a keep-alive connection waits for its next request
        // (as haproxy's http-keep-alive defaults to http-request): an idle close, not a slow
        // client.
        debug!(client = %peer, "idle keep-alive connection closed after header_read_timeout");
        return;
    }
    if e.is_parse_too_large() {
        metrics.limit_hit(Limit::HeaderBytes);
    } else if e.is_timeout() {
        metrics.limit_hit(Limit::HeaderTimeout);
    }
    debug!(client = %peer, error = %error_chain(&e), "connection ended with error");
}

fn http1_builder(snapshot: &Snapshot) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(PolledTimer)
        .header_read_timeout(snapshot.listener.header_read_timeout)
        // The parser's buffer (never below hyper's 8 KiB floor) caps memory; the request path
        // holds max_request_header_bytes exactly (framing::check_head_size).
        .max_buf_size(snapshot.listener.max_request_header_bytes.max(8192));
    b
}

/// HTTP/2 with every bound set from the config, not left to library defaults.
fn http2_builder(snapshot: &Snapshot) -> http2::Builder<TokioExecutor> {
    let h2 = &snapshot.listener.h2;
    let mut b = http2::Builder::new(TokioExecutor::new());
    // The header list bound caps memory with room to spare (h2 counts 32 bytes more per field
    // than the head carries): the request path holds max_request_header_bytes exactly and
    // answers 431; past twice the limit h2 answers 431 itself.
    let header_list = snapshot.listener.max_request_header_bytes.saturating_mul(2);
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_list).unwrap_or(u32::MAX))
        .max_concurrent_streams(snapshot.listener.max_concurrent_streams)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams)
        .keep_alive_interval(h2.keepalive_interval)
        .keep_alive_timeout(h2.keepalive_timeout);
    b
}

/// After an idle GOAWAY, the connection is dropped this long later whatever the client does.
const IDLE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a connection to its end; shutdown, the request limit or (HTTP/2) `idle` without a
/// request close it gracefully (finish what is in flight, then close; HTTP/2: GOAWAY). Every
/// `period` the connection is polled (HTTP/1.1: for its header deadline, see `head_timer`) and
/// its idle time checked: one timer per connection, never one per request.
async fn drive<C>(
    mut conn: Pin<Box<C>>,
    drain: fn(Pin<&mut C>),
    stop: &CancellationToken,
    ctx: &ConnContext,
    period: std::time::Duration,
    idle: Option<(std::time::Duration, &crate::telemetry::metrics::Metrics)>,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut closing = false;
    // After an idle GOAWAY, how long the client has to take it: HTTP/2's graceful close waits
    // for the client to answer a PING, so a client that never reads would otherwise keep the
    // connection (and its slot) until keep-alive PINGs time out, or for ever without them.
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = async {
                match grace.as_mut() {
                    Some(g) => g.await,
                    None => std::future::pending().await,
                }
            } => {
                debug!(client = %ctx.peer, "idle HTTP/2 connection closed: the client did not take the GOAWAY within {IDLE_CLOSE_GRACE:?}");
                return Ok(());
            }
            // Also while closing: a half-read HTTP/1.1 head still meets its deadline.
            _ = tick.tick() => {
                if !closing
                    && let Some((limit, metrics)) = idle
                    // Coarse seconds: "more than" makes the wait at least `limit`, never less.
                    && ctx.idle_for(crate::util::time::coarse_unix_now()) > limit.as_secs().max(1) as i64
                {
                    metrics.limit_hit(Limit::Idle);
                    debug!(client = %ctx.peer, "idle HTTP/2 connection closed (GOAWAY) after idle_timeout");
                    closing = true;
                    drain(conn.as_mut());
                    grace = Some(Box::pin(tokio::time::sleep(IDLE_CLOSE_GRACE)));
                }
            }
            () = stop.cancelled(), if !closing => {
                closing = true;
                drain(conn.as_mut());
            }
            () = ctx.close.notified(), if !closing => {
                closing = true;
                drain(conn.as_mut());
            }
        }
    }
}
