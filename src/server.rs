//! Listeners, the accept loop, per-connection setup and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admin;
use crate::identity::{ClientIdentity, IdentityCache};
use crate::inventory::LoadOutcome;
use crate::metrics::Limit;
use crate::proxy::{self, ConnContext};
use crate::reload::{self, ReloadRequest};
use crate::snapshot::{Snapshot, fmt_time, unix_now};
use crate::telemetry::Telemetry;
use crate::tls::{self, HandshakeResult};

/// State shared by the listeners: the current snapshot, metrics, readiness.
pub struct Gateway {
    pub current: ArcSwap<Snapshot>,
    pub telemetry: Arc<Telemetry>,
    pub ready: AtomicBool,
    /// Where reload requests go (SIGHUP, `POST /reload`, file changes).
    pub reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// Client identities shared by the connections that present the same certificate.
    pub identities: IdentityCache,
    /// The generation of each snapshot swapped in, for what must re-check itself on a reload
    /// without a request to trigger it (upgraded tunnels).
    pub snapshot_swaps: tokio::sync::watch::Sender<u64>,
}

/// A gateway whose sockets are bound but which is not serving yet.
pub struct Bound {
    gateway: Arc<Gateway>,
    reload_requests: tokio::sync::mpsc::Receiver<ReloadRequest>,
    listener: TcpListener,
    admin: TcpListener,
}

impl Bound {
    /// Binds the mTLS and admin listeners named in the snapshot. `telemetry` must be the one
    /// the snapshot was built with.
    pub async fn bind(snapshot: Snapshot, telemetry: Arc<Telemetry>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(snapshot.bind)
            .await
            .map_err(|e| anyhow::anyhow!("listener.bind: cannot bind {}: {e}", snapshot.bind))?;
        let admin = TcpListener::bind(snapshot.admin_bind)
            .await
            .map_err(|e| anyhow::anyhow!("admin.bind: cannot bind {}: {e}", snapshot.admin_bind))?;
        telemetry
            .inventory
            .set_max_entries(snapshot.inventory.max_entries);
        if let Some(path) = &snapshot.inventory.path {
            match telemetry.inventory.load(path) {
                LoadOutcome::NoFile => {
                    info!(path = %path.display(), "inventory: no saved file yet")
                }
                LoadOutcome::Loaded(n) => {
                    info!(path = %path.display(), identities = n, "inventory loaded")
                }
                LoadOutcome::SetAside(aside, why) => warn!(
                    path = %path.display(),
                    set_aside = %aside.display(),
                    error = %why,
                    "inventory file unreadable; set aside, starting empty"
                ),
            }
        }
        snapshot.publish(&telemetry.metrics);
        let (reloads, reload_requests) = reload::channel();
        let (snapshot_swaps, _) = tokio::sync::watch::channel(snapshot.generation);
        Ok(Self {
            gateway: Arc::new(Gateway {
                current: ArcSwap::from_pointee(snapshot),
                telemetry,
                ready: AtomicBool::new(false),
                identities: IdentityCache::default(),
                reloads,
                snapshot_swaps,
            }),
            reload_requests,
            listener,
            admin,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and drains in-flight requests for
    /// up to the configured `drain_timeout`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Bound {
            gateway,
            reload_requests,
            listener,
            admin,
        } = self;
        let snap = gateway.current.load_full();
        for w in &snap.warnings {
            warn!(warning = %w, "config");
        }
        for w in snap.expiry_warnings(unix_now()) {
            warn!(warning = %w, "expiry");
        }
        info!(
            listen = %listener.local_addr()?,
            admin = %admin.local_addr()?,
            routes = snap.routes.routes().len(),
            upstreams = snap.upstreams.len(),
            client_auth = snap.client_auth_mode.as_str(),
            config = %snap.config_path.display(),
            "certgate serving"
        );
        let admin_task = tokio::spawn(admin::serve(admin, gateway.clone()));
        let flush_task = tokio::spawn(flush_inventory_periodically(gateway.clone()));
        crate::upstream::spawn_background(&snap.upstreams);
        let reload_task = tokio::spawn(reload::run(gateway.clone(), reload_requests));
        reload::spawn_sighup(gateway.reloads.clone());
        if snap.reload.watch {
            reload::spawn_watcher(gateway.clone(), gateway.reloads.clone());
        }
        let expiry_task = tokio::spawn(warn_about_expiry_hourly(gateway.clone()));
        gateway.ready.store(true, Ordering::SeqCst);

        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let mut max_connections = snap.max_connections;
        let slots = Arc::new(Semaphore::new(max_connections));
        drop(snap);
        let mut shutdown = std::pin::pin!(shutdown);
        // Set once SIGTERM arrives: keep accepting (not ready) until then.
        let mut stop_accepting_at: Option<tokio::time::Instant> = None;
        loop {
            resize(
                &slots,
                &mut max_connections,
                gateway.current.load().max_connections,
            );
            // At max_connections, stop accepting until a connection ends: new clients wait in
            // the kernel's accept queue instead of being refused.
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    gateway.telemetry.metrics.limit_hit(Limit::Connections);
                    tokio::select! {
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        () = &mut shutdown, if stop_accepting_at.is_none() => {
                            stop_accepting_at = Some(begin_shutdown(&gateway));
                            continue;
                        }
                        () = sleep_until(stop_accepting_at), if stop_accepting_at.is_some() => break,
                    }
                }
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        connections.spawn(serve_connection(gateway.clone(), tcp, peer, stop.clone(), permit));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown, if stop_accepting_at.is_none() => {
                    stop_accepting_at = Some(begin_shutdown(&gateway));
                }
                () = sleep_until(stop_accepting_at), if stop_accepting_at.is_some() => break,
            }
        }
        gateway.ready.store(false, Ordering::SeqCst);
        drop(listener);
        let drain = gateway.current.load().drain_timeout;
        info!(
            connections = connections.len(),
            ?drain,
            "shutting down: draining in-flight requests"
        );
        stop.cancel();
        connections.close();
        tokio::select! {
            () = connections.wait() => info!("drained; exiting"),
            () = tokio::time::sleep(drain) => warn!(remaining = connections.len(), "drain timeout reached; closing remaining connections"),
        }
        admin_task.abort();
        flush_task.abort();
        reload_task.abort();
        expiry_task.abort();
        save_inventory(&gateway).await;
        Ok(())
    }
}

/// SIGTERM: readiness off at once; the listener stays open for `shutdown_grace` so load
/// balancers stop sending traffic before connections are refused.
fn begin_shutdown(gateway: &Gateway) -> tokio::time::Instant {
    gateway.ready.store(false, Ordering::SeqCst);
    let grace = gateway.current.load().shutdown_grace;
    info!(
        ?grace,
        "shutdown requested: not ready; still accepting during the grace period"
    );
    tokio::time::Instant::now() + grace
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a reloaded `max_connections` to the accept semaphore.
fn resize(slots: &Semaphore, current: &mut usize, wanted: usize) {
    if wanted > *current {
        slots.add_permits(wanted - *current);
        *current = wanted;
    } else if wanted < *current {
        // Permits held by open connections are taken back as those connections end.
        let forgotten = slots.forget_permits(*current - wanted);
        *current -= forgotten;
    }
}

/// Repeats the expiry warnings every hour (they are also logged at start and on reload).
async fn warn_about_expiry_hourly(gateway: Arc<Gateway>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        for w in gateway.current.load().expiry_warnings(unix_now()) {
            warn!(warning = %w, "expiry");
        }
    }
}

async fn flush_inventory_periodically(gateway: Arc<Gateway>) {
    loop {
        let every = gateway.current.load().inventory.flush_interval;
        tokio::time::sleep(every).await;
        save_inventory(&gateway).await;
    }
}

/// Saves the inventory when `[inventory].path` is set; file I/O runs off the async workers.
async fn save_inventory(gateway: &Arc<Gateway>) {
    let Some(path) = gateway.current.load().inventory.path.clone() else {
        return;
    };
    let telemetry = gateway.telemetry.clone();
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || telemetry.inventory.save(&path)).await {
        Ok(Ok(n)) => debug!(path = %shown, identities = n, "inventory saved"),
        Ok(Err(e)) => warn!(path = %shown, error = %e, "inventory could not be saved"),
        Err(e) => warn!(path = %shown, error = %e, "inventory save task failed"),
    }
}

/// Decrements the active-connection gauge however the connection ends.
struct ActiveConnection(prometheus::IntGauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_connection(
    gateway: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
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
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = {
        let ctx = ctx.clone();
        // Boxed so that hyper's per-connection slot for the request future stays small.
        service_fn(move |req| Box::pin(proxy::handle(ctx.clone(), req)))
    };
    let io = TokioIo::new(CountingIo {
        inner: tls,
        ctx: ctx.clone(),
    });
    // ALPN decides the protocol, as RFC 9113 requires over TLS (and as nginx does): "h2" gets
    // HTTP/2, anything else or no ALPN at all HTTP/1.1.
    let result = if h2 {
        let conn = Box::pin(http2_builder(&snapshot).serve_connection(io, service));
        drop(snapshot);
        drive(conn, |c| c.graceful_shutdown(), &stop, &ctx).await
    } else {
        let conn = Box::pin(
            http1_builder(&snapshot)
                .serve_connection(io, service)
                .with_upgrades(),
        );
        drop(snapshot);
        drive(conn, |c| c.graceful_shutdown(), &stop, &ctx).await
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
    debug!(client = %peer, error = %e, "connection ended with error");
}

/// The client's stream, counting the request bytes read (so that a header timeout on an idle
/// keep-alive connection can be told from a slow request head).
struct CountingIo<T> {
    inner: T,
    ctx: Arc<ConnContext>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.ctx.note_read(n);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The TLS handshake, the client certificate checks and the connection's context; `None` when
/// the connection was refused (counted and logged here).
async fn establish(
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
    let acceptor = TlsAcceptor::from(snapshot.tls.clone());
    let handshake = tokio::time::timeout(snapshot.handshake_timeout, acceptor.accept(tcp));
    let (accepted, refused_leaf) = tls::capture_refused_leaf(handshake).await;
    let tls = match accepted {
        Err(_) => {
            metrics.handshake(HandshakeResult::Other);
            metrics.limit_hit(Limit::HandshakeTimeout);
            debug!(target: "certgate::tls", client = %peer, "tls handshake timed out");
            return None;
        }
        Ok(Err(e)) => {
            let result = HandshakeResult::classify_io(&e);
            metrics.handshake(result);
            log_refused_handshake(peer, result, &e, refused_leaf.as_deref());
            return None;
        }
        Ok(Ok(s)) => s,
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let verified = match chain.split_first() {
        None => None,
        Some((leaf, intermediates)) => {
            // rustls restores a resumed session's client chain without verifying it again:
            // verify it here, so a certificate revoked or expired since the first handshake
            // cannot resume.
            if resumed
                && let Err(e) = snapshot.client_verifier.verify_client_cert(
                    leaf,
                    intermediates,
                    UnixTime::now(),
                )
            {
                let result = HandshakeResult::classify(&e);
                metrics.handshake(result);
                let err = std::io::Error::other(e);
                log_refused_handshake(peer, result, &err, Some(leaf.as_ref()));
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
            // The leaf is held once per certificate by the shared identity; only intermediates
            // the client sent are kept per connection.
            let intermediates: Vec<CertificateDer<'static>> = intermediates
                .iter()
                .map(|c| c.clone().into_owned())
                .collect();
            Some((id, intermediates))
        }
    };
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

fn http1_builder(snapshot: &Snapshot) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(snapshot.header_read_timeout)
        .max_buf_size(snapshot.max_request_header_bytes.max(8192));
    b
}

fn http2_builder(snapshot: &Snapshot) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(snapshot.max_request_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(snapshot.max_concurrent_streams);
    b
}

/// Runs a connection to its end; shutdown or the request limit closes it gracefully (finish
/// what is in flight, then close; HTTP/2: GOAWAY).
async fn drive<C>(
    mut conn: Pin<Box<C>>,
    drain: fn(Pin<&mut C>),
    stop: &CancellationToken,
    ctx: &ConnContext,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
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

/// One event per refused handshake, with what can be read of the refused certificate.
fn log_refused_handshake(
    peer: SocketAddr,
    result: HandshakeResult,
    err: &std::io::Error,
    leaf: Option<&[u8]>,
) {
    let presented = leaf.and_then(|der| ClientIdentity::from_der(der).ok());
    let p = presented.as_ref();
    warn!(
        target: "certgate::tls",
        client = %peer,
        result = result.label(),
        reason = %err,
        client_sha256 = p.map(|i| i.sha256_hex.as_str()),
        client_subject = p.map(|i| i.subject.as_str()),
        client_issuer = p.map(|i| i.issuer.as_str()),
        client_serial = p.map(|i| i.serial.as_str()),
        client_not_after = p.map(|i| fmt_time(i.not_after)),
        "tls handshake refused"
    );
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
