//! Connections to one upstream endpoint: opened on demand (TCP, optionally TLS, then HTTP/1.1 or
//! HTTP/2), kept alive and reused.
//!
//! HTTP/1.1 connections wait in a lock-free queue while idle; a request takes one, and its
//! response body puts it back the moment the last byte has been read (no task per request, no
//! lock shared by all workers). An HTTP/2 endpoint has one shared, multiplexed connection.
//! Idle connections older than the upstream's `idle_timeout` are closed by a sweep, and so,
//! half at a time, are idle connections the last period did not need (as HAProxy's
//! `pool-purge-delay`): after a burst the pool shrinks back to what the traffic uses within
//! seconds, giving back its memory and the upstream's connection slots, while steady traffic
//! keeps every connection it uses.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::UpstreamProtocol;
use crate::upstream::body::UpstreamBody;
use crate::util::time::coarse_unix_now;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Idle HTTP/1.1 connections kept per endpoint; more are closed when they fall idle.
const MAX_IDLE: usize = 256;

/// The longest time between sweeps, each of which closes half of the idle connections that the
/// period before did not need.
pub const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// How connections to an upstream's endpoints are opened.
pub struct Connector {
    pub protocol: UpstreamProtocol,
    /// `Some` for `https://` endpoints.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Overrides the endpoint's host as the TLS server name.
    pub server_name: Option<ServerName<'static>>,
    pub connect_timeout: Duration,
    /// Seconds an idle connection is kept.
    pub idle_timeout: Duration,
    /// Counts connections opened.
    pub opened: prometheus::IntCounter,
}

/// Why a request did not get a response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (TCP, TLS or HTTP/2 handshake): nothing was sent.
    Connect(BoxError),
    /// The connection failed while the request was on it.
    Request(hyper::Error),
}

struct Idle {
    tx: http1::SendRequest<UpstreamBody>,
    since: i64,
}

impl Idle {
    /// Still open and idle for less than `idle_timeout`.
    fn reusable(&self, idle_timeout: Duration) -> bool {
        !self.tx.is_closed() && self.since >= coarse_unix_now() - idle_timeout.as_secs() as i64
    }
}

/// The connections of one endpoint.
pub struct EndpointPool {
    authority: Authority,
    idle: ArrayQueue<Idle>,
    /// The fewest connections left idle by a checkout since the last sweep (`usize::MAX`: no
    /// checkout): that many were not needed.
    idle_low: AtomicUsize,
    h2: ArcSwapOption<http2::SendRequest<UpstreamBody>>,
    /// Serialises opening the shared HTTP/2 connection (not taken on the request path).
    h2_connecting: tokio::sync::Mutex<()>,
}

/// An HTTP/1.1 connection lent to one request, given back when its response has been read.
pub struct Lease {
    pool: Arc<EndpointPool>,
    tx: http1::SendRequest<UpstreamBody>,
}

impl Lease {
    fn release(self) {
        // Only a connection that can take its next request is kept. One still busy (say, still
        // sending a request body the upstream answered early) is let go: it finishes that
        // request and closes, instead of making the next request wait on it.
        if self.tx.is_ready() {
            self.pool.put(self.tx);
        }
    }
}

enum Conn {
    H1(http1::SendRequest<UpstreamBody>),
    H2(http2::SendRequest<UpstreamBody>),
}

impl EndpointPool {
    pub fn new(authority: Authority) -> Arc<Self> {
        Arc::new(Self {
            authority,
            idle: ArrayQueue::new(MAX_IDLE),
            idle_low: AtomicUsize::new(usize::MAX),
            h2: ArcSwapOption::empty(),
            h2_connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends `req` on a pooled connection (or a new one). A pooled connection that turns out to
    /// be closed before the request went out is replaced by a new one, transparently.
    pub async fn send(
        self: &Arc<Self>,
        connector: &Connector,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        loop {
            let (conn, reused) = self.checkout(connector).await?;
            let mut sent = match conn {
                Conn::H1(mut tx) => match tx.try_send_request(req).await {
                    Ok(resp) => {
                        // After 101 the connection belongs to the upgraded stream.
                        let lease =
                            (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease {
                                pool: self.clone(),
                                tx,
                            });
                        return Ok(resp.map(|inner| ResponseBody { inner, lease }));
                    }
                    Err(e) => e,
                },
                Conn::H2(mut tx) => match tx.try_send_request(req).await {
                    Ok(resp) => return Ok(resp.map(|inner| ResponseBody { inner, lease: None })),
                    Err(e) => e,
                },
            };
            match sent.take_message() {
                // Never left: the pooled connection had closed. Try again on a fresh one.
                Some(r) if reused => req = r,
                _ => return Err(SendError::Request(sent.into_error())),
            }
        }
    }

    /// Keeps a ready HTTP/1.1 connection for reuse; a full queue drops (closes) it.
    fn put(&self, tx: http1::SendRequest<UpstreamBody>) {
        let _ = self.idle.push(Idle {
            tx,
            since: coarse_unix_now(),
        });
    }

    /// A ready connection and whether it was pooled.
    async fn checkout(&self, connector: &Connector) -> Result<(Conn, bool), SendError> {
        if connector.protocol == UpstreamProtocol::H2 {
            if let Some(tx) = self.h2.load().as_deref()
                && !tx.is_closed()
            {
                return Ok((Conn::H2(tx.clone()), true));
            }
            let _one = self.h2_connecting.lock().await;
            if let Some(tx) = self.h2.load().as_deref()
                && !tx.is_closed()
            {
                return Ok((Conn::H2(tx.clone()), true));
            }
            let Conn::H2(tx) = Box::pin(self.connect(connector)).await? else {
                unreachable!("an h2 connector opens h2 connections")
            };
            self.h2.store(Some(Arc::new(tx.clone())));
            return Ok((Conn::H2(tx), false));
        }
        // What this checkout leaves idle; a plain load first keeps the common case read-only.
        let left = self.idle.len().saturating_sub(1);
        if left < self.idle_low.load(Ordering::Relaxed) {
            self.idle_low.fetch_min(left, Ordering::Relaxed);
        }
        while let Some(idle) = self.idle.pop() {
            if !idle.reusable(connector.idle_timeout) {
                continue;
            }
            let mut tx = idle.tx;
            if tx.is_ready() || tx.ready().await.is_ok() {
                return Ok((Conn::H1(tx), true));
            }
        }
        // Boxed: the rare connect path would otherwise size every request's future.
        Ok((Box::pin(self.connect(connector)).await?, false))
    }

    async fn connect(&self, connector: &Connector) -> Result<Conn, SendError> {
        let host = self.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if connector.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::time::timeout(connector.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                SendError::Connect(
                    format!("connect timed out after {:?}", connector.connect_timeout).into(),
                )
            })?
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        connector.opened.inc();
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let Some(tls) = &connector.tls else {
            return handshake(tcp, connector.protocol).await;
        };
        let name = match &connector.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| SendError::Connect(Box::new(e)))?,
        };
        let stream = tokio::time::timeout(
            connector.connect_timeout,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| SendError::Connect("TLS handshake timed out".into()))?
        .map_err(|e| SendError::Connect(Box::new(e)))?;
        handshake(stream, connector.protocol).await
    }

    /// Closes idle connections older than `idle_timeout` (or closed by the upstream), and half
    /// (rounded up) of those the period since the last sweep did not need: as many as were idle
    /// at every checkout, or all idle ones if there was none.
    pub fn sweep(&self, idle_timeout: Duration) {
        let unneeded = self.idle_low.swap(usize::MAX, Ordering::Relaxed);
        let mut surplus = unneeded.min(self.idle.len()).div_ceil(2);
        for _ in 0..self.idle.len() {
            let Some(idle) = self.idle.pop() else { break };
            if surplus > 0 {
                surplus -= 1;
                continue;
            }
            if idle.reusable(idle_timeout) {
                let _ = self.idle.push(idle);
            }
        }
        if self.h2.load().as_deref().is_some_and(|tx| tx.is_closed()) {
            self.h2.store(None);
        }
    }
}

async fn handshake<I>(io: I, protocol: UpstreamProtocol) -> Result<Conn, SendError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    match protocol {
        UpstreamProtocol::Http1 => {
            let (tx, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            tokio::spawn(conn.with_upgrades());
            Ok(Conn::H1(tx))
        }
        UpstreamProtocol::H2 => {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            tokio::spawn(conn);
            Ok(Conn::H2(tx))
        }
    }
}

/// An upstream response body; an HTTP/1.1 connection goes back to its pool at the body's end.
pub struct ResponseBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(lease) = this.lease.take()
        {
            lease.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Read to the end (the server stops polling once `is_end_stream` says so): reusable.
        // Dropped half-read: the connection is dropped with it and closes.
        if let Some(lease) = self.lease.take()
            && self.inner.is_end_stream()
        {
            lease.release();
        }
    }
}
