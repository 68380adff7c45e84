//! `certgate-bench soak`: bounded mixed traffic against a running gateway (`benches/load/soak.sh`).
//!
//! Well-behaved clients — HTTP/1.1 keep-alive, HTTP/2 multiplexed, WebSocket echo — run for
//! `--seconds` beside slowloris clients (a TCP trickle before the TLS handshake and a TLS
//! connection trickling its request head) while the admin listener is asked to reload every
//! `--reload-every` seconds. Every `--sample-every` seconds one line reports the gateway's RSS, open
//! descriptors and what each kind of client saw; at the end a Markdown table of the samples. Exit
//! status 1 when a well-behaved client saw anything but its answer, or a reload failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args)]
pub struct Args {
    /// The gateway's listener.
    #[arg(long)]
    connect: SocketAddr,
    /// The gateway's admin listener (POST /reload).
    #[arg(long)]
    admin: SocketAddr,
    /// The gateway's process id (RSS and descriptors from /proc).
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    ca: std::path::PathBuf,
    #[arg(long)]
    cert: std::path::PathBuf,
    #[arg(long)]
    key: std::path::PathBuf,
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    #[arg(long, default_value_t = 10)]
    reload_every: u64,
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// HTTP/1.1 keep-alive clients (each reconnects after 1,000 requests).
    #[arg(long, default_value_t = 6)]
    h1: usize,
    /// HTTP/2 connections, each with 8 concurrent streams.
    #[arg(long, default_value_t = 2)]
    h2: usize,
    /// WebSocket clients (each reconnects after 200 messages).
    #[arg(long, default_value_t = 4)]
    ws: usize,
    /// Slowloris connections (half before TLS, half inside an HTTP/1.1 request head).
    #[arg(long, default_value_t = 40)]
    slow: usize,
    /// Pause between one client's requests, in milliseconds (keeps the load below saturation).
    #[arg(long, default_value_t = 2)]
    pause_ms: u64,
}

#[derive(Default)]
struct Tally {
    h1: AtomicU64,
    h2: AtomicU64,
    ws: AtomicU64,
    handshakes: AtomicU64,
    slow_cut: AtomicU64,
    reloads: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn error(&self, what: impl std::fmt::Display) {
        let mut errors = self.errors.lock().unwrap();
        *errors.entry(what.to_string()).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.lock().unwrap().values().sum()
    }
}

struct Sample {
    at: u64,
    rss_kib: u64,
    fds: usize,
    h1: u64,
    h2: u64,
    ws: u64,
    slow_cut: u64,
    reloads: u64,
    errors: u64,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let h1_tls = crate::client_config(&args.ca, &args.cert, &args.key, b"http/1.1")?;
    let h2_tls = crate::client_config(&args.ca, &args.cert, &args.key, b"h2")?;
    let pause = Duration::from_millis(args.pause_ms);
    let mut tasks = Vec::new();
    for i in 0..args.h1 {
        let c = Client::new(&args, &h1_tls, &tally, deadline, pause);
        tasks.push(tokio::spawn(async move { c.http1(i).await }));
    }
    for _ in 0..args.h2 {
        let c = Client::new(&args, &h2_tls, &tally, deadline, pause);
        tasks.push(tokio::spawn(async move { c.http2().await }));
    }
    for i in 0..args.ws {
        let c = Client::new(&args, &h1_tls, &tally, deadline, pause);
        tasks.push(tokio::spawn(async move { c.websocket(i).await }));
    }
    for i in 0..args.slow {
        let c = Client::new(&args, &h1_tls, &tally, deadline, pause);
        tasks.push(tokio::spawn(async move { c.slowloris(i % 2 == 0).await }));
    }
    let reloader = tokio::spawn(reloads(
        args.admin,
        Duration::from_secs(args.reload_every),
        deadline,
        tally.clone(),
    ));

    let mut samples = Vec::new();
    let every = Duration::from_secs(args.sample_every);
    let mut next = started + every;
    while next <= deadline {
        tokio::time::sleep_until(next.into()).await;
        let s = sample(&tally, args.pid, started.elapsed().as_secs());
        println!(
            "t={:>4}s rss={:.1}MB fds={} h1={} h2={} ws={} slowloris_cut={} reloads={} errors={}",
            s.at,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.h1,
            s.h2,
            s.ws,
            s.slow_cut,
            s.reloads,
            s.errors
        );
        samples.push(s);
        next += every;
    }
    // Clients stop at the deadline; give a request in flight time to finish.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), reloader).await;
    report(&samples, &tally);
    Ok(tally.error_count() == 0)
}

fn sample(tally: &Tally, pid: u32, at: u64) -> Sample {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    Sample {
        at,
        rss_kib,
        fds,
        h1: tally.h1.load(Ordering::Relaxed),
        h2: tally.h2.load(Ordering::Relaxed),
        ws: tally.ws.load(Ordering::Relaxed),
        slow_cut: tally.slow_cut.load(Ordering::Relaxed),
        reloads: tally.reloads.load(Ordering::Relaxed),
        errors: tally.error_count(),
    }
}

fn report(samples: &[Sample], tally: &Tally) {
    println!();
    println!(
        "| t (s) | RSS (MB) | fds | HTTP/1.1 | HTTP/2 | WebSocket msgs | slowloris cut | reloads | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in samples {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            s.at,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.h1,
            s.h2,
            s.ws,
            s.slow_cut,
            s.reloads,
            s.errors
        );
    }
    if let (Some(first), Some(last)) = (samples.get(samples.len().min(6) - 1), samples.last()) {
        let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        println!(
            "\nRSS at {} s {:.1} MB, at {} s {:.1} MB (change {:+.1} MB), peak {:.1} MB; {} TLS connections opened by the well-behaved clients",
            first.at,
            first.rss_kib as f64 / 1024.0,
            last.at,
            last.rss_kib as f64 / 1024.0,
            (last.rss_kib as f64 - first.rss_kib as f64) / 1024.0,
            peak as f64 / 1024.0,
            tally.handshakes.load(Ordering::Relaxed)
        );
    }
    let errors = tally.errors.lock().unwrap();
    if errors.is_empty() {
        println!("well-behaved clients saw no errors");
    }
    for (what, n) in errors.iter() {
        println!("ERROR x{n}: {what}");
    }
}

async fn reloads(admin: SocketAddr, every: Duration, deadline: Instant, tally: Arc<Tally>) {
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() >= deadline {
            return;
        }
        match reload(admin).await {
            Ok(200) => {
                tally.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => tally.error(format!("reload answered {status}")),
            Err(e) => tally.error(format!("reload failed: {e}")),
        }
    }
}

async fn reload(admin: SocketAddr) -> anyhow::Result<u16> {
    let tcp = tokio::net::TcpStream::connect(admin).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::post("/reload")
        .header("host", admin.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// What one soak client needs: where to connect, how, and where to count.
struct Client {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    tally: Arc<Tally>,
    deadline: Instant,
    pause: Duration,
}

impl Client {
    fn new(
        args: &Args,
        tls: &Arc<rustls::ClientConfig>,
        tally: &Arc<Tally>,
        deadline: Instant,
        pause: Duration,
    ) -> Client {
        Client {
            addr: args.connect,
            tls: tokio_rustls::TlsConnector::from(tls.clone()),
            tally: tally.clone(),
            deadline,
            pause,
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    async fn tls(&self) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        self.tally.handshakes.fetch_add(1, Ordering::Relaxed);
        Ok(tls)
    }

    /// Runs one connection after another until the deadline; a failed one counts as an error
    /// of `kind`.
    async fn repeat<F, Fut>(&self, kind: &str, mut connection: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        while self.running() {
            if let Err(e) = connection().await {
                self.tally.error(format!("{kind}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Keep-alive HTTP/1.1: GETs and 1 KiB POSTs, a new connection every 1,000 requests.
    async fn http1(&self, n: usize) {
        self.repeat("http/1.1", || self.http1_connection(n)).await;
    }

    async fn http1_connection(&self, n: usize) -> anyhow::Result<()> {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await?)).await?;
        let conn = tokio::spawn(conn);
        for i in 0..1000 {
            if !self.running() {
                break;
            }
            let req = if i % 4 == 0 {
                http::Request::post(format!("/soak/h1/{n}"))
                    .header("host", "localhost")
                    .body(Full::new(Bytes::from(vec![b'x'; 1024])).boxed())?
            } else {
                http::Request::get(format!("/soak/h1/{n}?i={i}"))
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()).boxed())?
            };
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            if status != 200 || body.as_ref() != b"ok\n" {
                anyhow::bail!("status {status}");
            }
            self.tally.h1.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.pause).await;
        }
        drop(send);
        let _ = conn.await;
        Ok(())
    }

    /// One HTTP/2 connection with 8 concurrent request loops, renewed every 8,000 requests.
    async fn http2(self) {
        let me = Arc::new(self);
        me.repeat("http/2", || me.clone().http2_connection()).await;
    }

    async fn http2_connection(self: Arc<Self>) -> anyhow::Result<()> {
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(self.tls().await?))
            .await?;
        let conn = tokio::spawn(conn);
        let mut streams = Vec::new();
        for s in 0..8 {
            let mut send = send.clone();
            let me = self.clone();
            streams.push(tokio::spawn(async move {
                for i in 0..1000 {
                    if !me.running() {
                        break;
                    }
                    let req = http::Request::get(format!("/soak/h2/{s}?i={i}"))
                        .header("host", "localhost")
                        .body(Empty::<Bytes>::new())?;
                    let resp = send.send_request(req).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    if status != 200 {
                        anyhow::bail!("status {status}");
                    }
                    me.tally.h2.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(me.pause).await;
                }
                anyhow::Ok(())
            }));
        }
        drop(send);
        let mut result = Ok(());
        for s in streams {
            if let Err(e) = s.await? {
                result = Err(e);
            }
        }
        conn.abort();
        result
    }

    /// A WebSocket through the gateway: a text message every 50 ms, each echoed; 200 per
    /// connection.
    async fn websocket(&self, n: usize) {
        self.repeat("websocket", || self.websocket_connection(n))
            .await;
    }

    async fn websocket_connection(&self, n: usize) -> anyhow::Result<()> {
        let url = format!("wss://localhost:{}/ws/{n}", self.addr.port());
        let (mut ws, _) = tokio_tungstenite::client_async(url, self.tls().await?).await?;
        for i in 0..200 {
            if !self.running() {
                break;
            }
            let text = format!("soak {n} {i}");
            ws.send(Message::text(text.clone())).await?;
            match ws.next().await {
                Some(Ok(Message::Text(echo))) if echo.as_str() == text => {}
                other => anyhow::bail!("echo of {text:?} was {other:?}"),
            }
            self.tally.ws.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ws.close(None).await?;
        Ok(())
    }

    /// A slowloris: one byte every two seconds, before the TLS handshake (`raw`) or inside an
    /// HTTP/1.1 request head, until the gateway cuts the connection; then again.
    async fn slowloris(&self, raw: bool) {
        while self.running() {
            let cut = if raw {
                match tokio::net::TcpStream::connect(self.addr).await {
                    Ok(tcp) => self.trickle(tcp, b"\x16\x03\x01\x02\x00\x01").await,
                    Err(_) => false,
                }
            } else {
                match self.tls().await {
                    Ok(tls) => {
                        self.tally.handshakes.fetch_sub(1, Ordering::Relaxed);
                        self.trickle(
                            tls,
                            b"GET /soak/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
                        )
                        .await
                    }
                    Err(_) => false,
                }
            };
            if cut {
                self.tally.slow_cut.fetch_add(1, Ordering::Relaxed);
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Writes `start`, then one more byte every two seconds; true when the gateway closed the
    /// connection, false at the deadline.
    async fn trickle(&self, mut io: impl tokio::io::AsyncWrite + Unpin, start: &[u8]) -> bool {
        if io.write_all(start).await.is_err() || io.flush().await.is_err() {
            return true;
        }
        while self.running() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if io.write_all(b"a").await.is_err() || io.flush().await.is_err() {
                return true;
            }
        }
        false
    }
}
