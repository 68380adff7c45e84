//! Listeners, the accept loop, per-connection setup and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admin;
use crate::identity::ClientIdentity;
use crate::proxy::{self, ConnContext};
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;
use crate::tls::HandshakeResult;

/// State shared by the listeners: the current snapshot, metrics, readiness.
pub struct Gateway {
    pub current: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
}

/// A gateway whose sockets are bound but which is not serving yet.
pub struct Bound {
    gateway: Arc<Gateway>,
    listener: TcpListener,
    admin: TcpListener,
}

impl Bound {
    /// Binds the mTLS and admin listeners named in the snapshot.
    pub async fn bind(snapshot: Snapshot) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(snapshot.bind)
            .await
            .map_err(|e| anyhow::anyhow!("listener.bind: cannot bind {}: {e}", snapshot.bind))?;
        let admin = TcpListener::bind(snapshot.admin_bind)
            .await
            .map_err(|e| anyhow::anyhow!("admin.bind: cannot bind {}: {e}", snapshot.admin_bind))?;
        Ok(Self {
            gateway: Arc::new(Gateway {
                current: ArcSwap::from_pointee(snapshot),
                metrics: Arc::new(Metrics::new()),
                ready: AtomicBool::new(false),
            }),
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
            listener,
            admin,
        } = self;
        let snap = gateway.current.load_full();
        for w in &snap.warnings {
            warn!(warning = %w, "config");
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
        gateway.ready.store(true, Ordering::SeqCst);

        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        tokio::spawn(serve_connection(gateway.clone(), tcp, peer, graceful.watcher()));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        gateway.ready.store(false, Ordering::SeqCst);
        drop(listener);
        let drain = gateway.current.load().drain_timeout;
        info!(
            connections = graceful.count(),
            ?drain,
            "shutting down: draining in-flight requests"
        );
        tokio::select! {
            () = graceful.shutdown() => info!("drained; exiting"),
            () = tokio::time::sleep(drain) => warn!("drain timeout reached; closing remaining connections"),
        }
        admin_task.abort();
        Ok(())
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
    watcher: Watcher,
) {
    let metrics = gateway.metrics.clone();
    metrics.active_connections.inc();
    let _active = ActiveConnection(metrics.active_connections.clone());
    let _ = tcp.set_nodelay(true);
    // One snapshot for the whole connection.
    let snapshot = gateway.current.load_full();
    let acceptor = TlsAcceptor::from(snapshot.tls.clone());
    let tls = match tokio::time::timeout(snapshot.handshake_timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            metrics.handshake(HandshakeResult::Other);
            debug!(client = %peer, "tls handshake timed out");
            return;
        }
        Ok(Err(e)) => {
            let result = HandshakeResult::classify_io(&e);
            metrics.handshake(result);
            warn!(target: "certgate::tls", client = %peer, result = result.label(), reason = %e, "tls handshake refused");
            return;
        }
        Ok(Ok(s)) => s,
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(leaf) => match ClientIdentity::from_der(leaf.as_ref()) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                // The verifier accepted it, so this is unexpected; refuse rather than guess.
                metrics.handshake(HandshakeResult::BadCertificate);
                warn!(target: "certgate::tls", client = %peer, reason = %e, "verified certificate could not be parsed; closing");
                return;
            }
        },
    };
    metrics.handshake(HandshakeResult::Ok);
    debug!(
        target: "certgate::tls",
        client = %peer,
        subject = identity.as_deref().map(|i| i.subject.as_str()),
        sha256 = identity.as_deref().map(|i| i.sha256_hex.as_str()),
        "tls handshake ok"
    );

    let header_read_timeout = snapshot.header_read_timeout;
    let ctx = Arc::new(ConnContext::new(snapshot, metrics, identity, peer));
    let service = service_fn(move |req| proxy::handle(ctx.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        debug!(client = %peer, error = %e, "connection ended with error");
    }
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
