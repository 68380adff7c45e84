//! The fleet backend: rate-limit counters in Redis, shared by every gateway that points at the
//! same server. One GCRA step is one atomic server-side script (Redis `TIME` is the clock, so
//! gateways need not agree on theirs), sent over one multiplexed connection that pipelines
//! concurrent requests.
//!
//! Redis is never allowed to stall requests: a check that takes longer than the backend timeout
//! or fails marks the backend down, as does a background PING (every [`PROBE_EVERY`]) that goes
//! unanswered; until a PING is answered again, checks do not go to Redis at all and
//! `on_backend_error` decides. Every such check is counted in
//! `certgate_limit_backend_errors_total{reason}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::IntCounter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{LimitKey, Outcome, RateLimitSpec};

/// How often a down backend is probed (PING) to find out it is back.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// A PING not answered within this marks the backend down (requests have their own, shorter
/// `backend_timeout`).
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// GCRA over Redis. KEYS[1]: the key's theoretical arrival time (µs since the epoch).
/// ARGV[1]: emission interval (µs per request); ARGV[2]: burst.
/// Returns {1, remaining} when the request is let through, {0, µs until it would be}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval)}
";

/// Why a check did not get Redis' answer: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFailure {
    /// No answer within the backend timeout.
    Timeout,
    /// The server or the connection reported an error.
    Error,
    /// Marked down by an earlier failure and not back yet: not asked.
    Unavailable,
}

impl BackendFailure {
    pub const ALL: [BackendFailure; 3] = [Self::Timeout, Self::Error, Self::Unavailable];

    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One Redis server's connection and health, shared by every route and kept across reloads
/// while `[limits].redis_url` stays the same.
pub struct RedisBackend {
    pub url: String,
    /// The URL without credentials, for logs.
    pub shown: String,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    up: AtomicBool,
    started: AtomicBool,
    script: redis::Script,
    /// By [`BackendFailure::ALL`] index.
    failures: [IntCounter; 3],
}

impl RedisBackend {
    /// Validates `url` (no I/O: the connection is made in the background once the snapshot is
    /// live). `failures` are the counters of `certgate_limit_backend_errors_total` by reason.
    pub fn new(url: &str, failures: [IntCounter; 3]) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        Ok(Self {
            url: url.to_string(),
            shown,
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            started: AtomicBool::new(false),
            script: redis::Script::new(GCRA),
            failures,
        })
    }

    /// Starts the background task that connects and probes (once; it ends when the backend
    /// is dropped). Must run inside the tokio runtime.
    pub fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(supervise(Arc::downgrade(self)));
        }
    }

    /// Waits until the backend answers, at most `limit`; false (and a WARN line) if it did not.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_up() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    target: "certgate::limits",
                    backend = %self.shown,
                    "rate-limit backend not reachable at start: on_backend_error applies until it answers"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Whether checks go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// One GCRA step for `key` of the route `route` under `spec`, answered within `timeout` or
    /// failed (and the backend marked down).
    pub async fn check(
        &self,
        route: &str,
        spec: &RateLimitSpec,
        key: &LimitKey,
        timeout: Duration,
    ) -> Result<Outcome, BackendFailure> {
        let conn = match (self.is_up(), self.conn.load_full()) {
            (true, Some(c)) => c,
            _ => return Err(self.failed(BackendFailure::Unavailable)),
        };
        let mut conn = (*conn).clone();
        let interval_us = (spec.per.as_micros() / u128::from(spec.requests)).max(1) as u64;
        let mut call = self.script.key(redis_key(route, spec, key));
        call.arg(interval_us).arg(spec.burst);
        match tokio::time::timeout(timeout, call.invoke_async::<(i64, i64)>(&mut conn)).await {
            Ok(Ok((1, remaining))) => Ok(Outcome::Allowed {
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            }),
            Ok(Ok((_, wait_us))) => Ok(Outcome::Limited {
                retry_after: Duration::from_micros(wait_us.max(0) as u64),
            }),
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                Err(self.failed(BackendFailure::Error))
            }
            Err(_) => {
                self.mark_down(&format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                ));
                Err(self.failed(BackendFailure::Timeout))
            }
        }
    }

    fn failed(&self, why: BackendFailure) -> BackendFailure {
        self.failures[why as usize].inc();
        why
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                target: "certgate::limits",
                backend = %self.shown,
                error = %why,
                "rate-limit backend unavailable: on_backend_error applies until it answers again"
            );
        }
    }
}

/// Connects, then probes every [`PROBE_EVERY`]: a backend that stops answering is marked down
/// before requests find out, one that answers again is marked up. Ends when it is dropped.
async fn supervise(backend: Weak<RedisBackend>) {
    loop {
        let Some(b) = backend.upgrade() else {
            return;
        };
        probe(&b).await;
        drop(b);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// One PING: answered within the probe limit, the backend is up; otherwise down.
async fn probe(b: &RedisBackend) {
    if b.conn.load().is_none() {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        match ConnectionManager::new_lazy_with_config(b.client.clone(), config) {
            Ok(c) => b.conn.store(Some(Arc::new(c))),
            Err(e) => {
                tracing::warn!(target: "certgate::limits", backend = %b.shown, error = %e, "rate-limit backend: cannot set up a connection");
                return;
            }
        }
    }
    let Some(conn) = b.conn.load_full() else {
        return;
    };
    let mut conn = (*conn).clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(PROBE_LIMIT, ping).await {
        Ok(Ok(_)) => {
            if !b.up.swap(true, Ordering::Relaxed) {
                tracing::info!(target: "certgate::limits", backend = %b.shown, "rate-limit backend reachable: counters are shared");
            }
        }
        Ok(Err(e)) => b.mark_down(&e.to_string()),
        Err(_) => b.mark_down("no answer to PING"),
    }
}

/// `certgate:rl:{route}:{requests}/{per µs}/{burst}:{key}`: a changed limit starts afresh, like
/// the local one, and gateways with the same route and limit share the key.
fn redis_key(route: &str, spec: &RateLimitSpec, key: &LimitKey) -> String {
    let who = match key {
        LimitKey::Identity(h) => hex::encode(h),
        LimitKey::SourceIp(ip) => ip.to_string(),
        LimitKey::Route => "_route".to_string(),
    };
    format!(
        "certgate:rl:{route}:{}/{}/{}:{who}",
        spec.requests,
        spec.per.as_micros(),
        spec.burst
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitKeyKind;

    #[test]
    fn keys_name_the_route_the_limit_and_the_client() {
        let spec = RateLimitSpec {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 20,
            key: LimitKeyKind::Identity,
        };
        assert_eq!(
            redis_key("pay", &spec, &LimitKey::Identity([0xab; 32])),
            format!("certgate:rl:pay:10/1000000/20:{}", "ab".repeat(32))
        );
        assert_eq!(
            redis_key("pay", &spec, &LimitKey::SourceIp("::1".parse().unwrap())),
            "certgate:rl:pay:10/1000000/20:::1"
        );
        assert_eq!(
            redis_key("pay", &spec, &LimitKey::Route),
            "certgate:rl:pay:10/1000000/20:_route"
        );
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_credentials() {
        let counters = || BackendFailure::ALL.map(|_| IntCounter::new("x", "x").unwrap());
        let b = RedisBackend::new("redis://user:secret@127.0.0.1:6380/2", counters()).unwrap();
        assert_eq!(b.shown, "redis://127.0.0.1:6380/2");
        assert!(RedisBackend::new("http://127.0.0.1/", counters()).is_err());
        assert!(!b.is_up(), "down until the first PING answers");
    }
}
