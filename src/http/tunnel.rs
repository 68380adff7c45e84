//! An upgraded (WebSocket) connection: bytes piped both ways between the client and the
//! upstream. The tunnel belongs to the client's identity: when a reload stops accepting that
//! certificate (revoked, CA removed) or the certificate expires, the tunnel is closed, as a
//! kept-alive connection is refused on its next request.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::ConnContext;
use crate::util::time::unix_now;

/// Pipes bytes until either side closes or the identity stops being accepted.
pub async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    request_id: HeaderValue,
    ctx: Arc<ConnContext>,
) {
    let id = request_id.to_str().unwrap_or("");
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(request_id = id, error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let mut swaps = ctx.gateway.snapshot_swaps.subscribe();
    let expires_in = ctx.identity.as_ref().map_or(Duration::MAX, |i| {
        Duration::from_secs(
            u64::try_from(i.not_after - unix_now())
                .unwrap_or(0)
                .saturating_add(1),
        )
    });
    let expiry = tokio::time::sleep(expires_in.min(Duration::from_secs(86400 * 365)));
    let mut expiry = std::pin::pin!(expiry);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    loop {
        tokio::select! {
            r = copy.as_mut() => {
                match r {
                    Ok((to_upstream, to_client)) => tracing::info!(
                        target: "certgate::access",
                        request_id = id,
                        bytes_to_upstream = to_upstream,
                        bytes_to_client = to_client,
                        "upgraded connection closed"
                    ),
                    Err(e) => tracing::debug!(request_id = id, error = %e, "upgraded connection ended"),
                }
                return;
            }
            changed = swaps.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = ctx.gateway.current.load_full();
                if let Err(why) = ctx.revalidate(&snapshot) {
                    closed(id, &why);
                    return;
                }
            }
            () = expiry.as_mut() => {
                closed(id, "client certificate expired while the connection was open");
                return;
            }
        }
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
