//! An upgraded (WebSocket) connection: bytes piped both ways between the client and the
//! upstream. The tunnel belongs to the client's identity: when a reload stops accepting that
//! certificate (revoked, CA removed) or the certificate expires, the tunnel is closed, as a
//! kept-alive connection is refused on its next request. It also ends when the access token it
//! was opened with expires, and when its bytes (either way) take the route's byte quota over.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::ConnContext;
use crate::limits::LimitKey;
use crate::limits::quota::Quota;
use crate::util::time::{unix_now, unix_now_ms};

/// What else bounds a tunnel besides its certificate.
pub struct Bounds {
    /// The route's quota with a byte limit, the key the request was counted under, and the
    /// route's `rate_limited_total{kind="quota"}`.
    pub quota: Option<(Arc<Quota>, LimitKey, prometheus::IntCounter)>,
    /// The `exp` (Unix seconds) of the access token the tunnel was opened with.
    pub token_exp: Option<u64>,
}

/// Pipes bytes until either side closes, the identity stops being accepted, the token expires
/// or the byte quota is used up.
pub async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    request_id: HeaderValue,
    ctx: Arc<ConnContext>,
    bounds: Bounds,
) {
    let id = request_id.to_str().unwrap_or("");
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(request_id = id, error = %e, "upgrade did not complete");
            return;
        }
    };
    let over_quota = Arc::new(AtomicBool::new(false));
    let (quota, quota_counter) = match bounds.quota {
        Some((q, key, counter)) => (Some((q, key)), Some(counter)),
        None => (None, None),
    };
    let mut client = Metered {
        io: TokioIo::new(client),
        quota,
        over: over_quota.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let mut swaps = ctx.gateway.snapshot_swaps.subscribe();
    let (expires_in, token_first) = lifetime(&ctx, bounds.token_exp);
    let expiry = tokio::time::sleep(expires_in.min(Duration::from_secs(86400 * 365)));
    let mut expiry = std::pin::pin!(expiry);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    loop {
        tokio::select! {
            r = copy.as_mut() => {
                ended(id, r, over_quota.load(Ordering::Relaxed), quota_counter.as_ref());
                return;
            }
            changed = swaps.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = ctx.gateway.current.load_full();
                if let Err(why) = ctx.revalidate(&snapshot) {
                    closed(id, &why.to_string());
                    return;
                }
            }
            () = expiry.as_mut() => {
                if token_first {
                    tracing::info!(
                        target: "certgate::access",
                        request_id = id,
                        reason = "access token expired while the connection was open",
                        "upgraded connection closed: its access token expired"
                    );
                } else {
                    closed(id, "client certificate expired while the connection was open");
                }
                return;
            }
        }
    }
}

/// How long the tunnel may stay open: until the certificate or the token expires, whichever
/// is first (true: the token).
fn lifetime(ctx: &ConnContext, token_exp: Option<u64>) -> (Duration, bool) {
    let now = unix_now();
    let cert_left = ctx
        .identity
        .as_ref()
        .map_or(i64::MAX, |i| i.not_after - now);
    let token_left = token_exp.map_or(i64::MAX, |exp| i64::try_from(exp).unwrap_or(i64::MAX) - now);
    let left = token_left.min(cert_left);
    let expires_in = Duration::from_secs(u64::try_from(left).unwrap_or(0).saturating_add(1));
    (expires_in, token_left < cert_left)
}

/// The tunnel's copy ended: by the quota, by either side, or by an error.
fn ended(
    id: &str,
    r: std::io::Result<(u64, u64)>,
    over_quota: bool,
    quota_counter: Option<&prometheus::IntCounter>,
) {
    match r {
        _ if over_quota => {
            if let Some(c) = quota_counter {
                c.inc();
            }
            tracing::info!(
                target: "certgate::access",
                request_id = id,
                reason = "the route's byte quota is used up",
                "upgraded connection closed: its byte quota is used up"
            );
        }
        Ok((to_upstream, to_client)) => tracing::info!(
            target: "certgate::access",
            request_id = id,
            bytes_to_upstream = to_upstream,
            bytes_to_client = to_client,
            "upgraded connection closed"
        ),
        Err(e) => tracing::debug!(request_id = id, error = %e, "upgraded connection ended"),
    }
}

fn closed(request_id: &str, why: &str) {
    tracing::info!(
        target: "certgate::access",
        request_id,
        reason = why,
        "upgraded connection closed: its certificate is no longer accepted"
    );
}

/// The client side of a tunnel, counting what passes either way against the byte quota. The
/// chunk that takes the use over the quota goes through (as the response that crosses an HTTP
/// quota completes); the next read or write fails, which ends the tunnel.
struct Metered<T> {
    io: T,
    quota: Option<(Arc<Quota>, LimitKey)>,
    over: Arc<AtomicBool>,
}

impl<T> Metered<T> {
    fn charge(&self, n: usize) {
        if let Some((quota, key)) = &self.quota
            && n > 0
            && quota.charge_tunnel_bytes(key, unix_now_ms(), n as u64)
        {
            self.over.store(true, Ordering::Relaxed);
        }
    }

    fn refused(&self) -> Option<std::io::Error> {
        self.over
            .load(Ordering::Relaxed)
            .then(|| std::io::Error::other("byte quota used up"))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.refused() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.charge(buf.filled().len() - before);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.refused() {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.charge(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
