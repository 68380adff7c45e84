//! Anomaly signals: patterns in one identity's traffic that precede or reveal abuse — a
//! copied key used from many places (shared_credential), probing (denial_burst), a sudden
//! burst against the identity's own habits (rate_spike), and a credential reaching for a
//! route it never called (new_route). Each signal is a WARN line on target
//! `certgate::anomaly`, a count in `certgate_anomalies_total{kind}`, and an entry in the last
//! [`RECENT`] kept for `GET /anomalies`.
//!
//! The state lives for the process (a reload keeps it; the thresholds come from the snapshot
//! of each request) in a sharded map: one short shard lock per request, no global lock.

mod track;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prometheus::IntCounter;
use serde::Serialize;

use crate::config::RawAnomaly;
use crate::telemetry::metrics::Metrics;
use crate::util::text::{LOG_FIELD_MAX, bounded};
use track::{Seen, Track};

/// Signals kept for `GET /anomalies`.
pub const RECENT: usize = 1000;

/// Largest `distinct_source_ips` (each identity keeps up to one more address than it).
const MAX_DISTINCT_IPS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    SharedCredential = 0,
    DenialBurst = 1,
    RateSpike = 2,
    NewRoute = 3,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 4] = [
        Self::SharedCredential,
        Self::DenialBurst,
        Self::RateSpike,
        Self::NewRoute,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::SharedCredential => "shared_credential",
            Self::DenialBurst => "denial_burst",
            Self::RateSpike => "rate_spike",
            Self::NewRoute => "new_route",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// `[anomaly]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySpec {
    pub window: Duration,
    pub distinct_source_ips: usize,
    pub denial_burst: u32,
    pub spike_factor: f64,
    pub spike_min_requests: u32,
    pub spike_interval: Duration,
    pub learning_period: Duration,
    pub max_identities: usize,
    pub idle_timeout: Duration,
}

impl AnomalySpec {
    /// `None` when disabled. Errors are `(key, problem)`, the key relative to `[anomaly]`.
    pub fn compile(raw: &RawAnomaly) -> Result<Option<Self>, (&'static str, String)> {
        if !raw.enabled {
            return Ok(None);
        }
        let positive = [
            ("window", raw.window),
            ("spike_interval", raw.spike_interval),
            ("idle_timeout", raw.idle_timeout),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, d)| d.as_millis() == 0) {
            return Err((key, "must be at least 1ms".into()));
        }
        if raw.distinct_source_ips == 0 || raw.distinct_source_ips > MAX_DISTINCT_IPS {
            return Err((
                "distinct_source_ips",
                format!("must be between 1 and {MAX_DISTINCT_IPS}"),
            ));
        }
        if raw.denial_burst == 0 {
            return Err(("denial_burst", "must be at least 1".into()));
        }
        if !(raw.spike_factor.is_finite() && raw.spike_factor >= 1.0) {
            return Err(("spike_factor", "must be a number of at least 1".into()));
        }
        if raw.spike_min_requests == 0 {
            return Err(("spike_min_requests", "must be at least 1".into()));
        }
        if raw.max_identities == 0 {
            return Err(("max_identities", "must be at least 1".into()));
        }
        Ok(Some(Self {
            window: raw.window,
            distinct_source_ips: raw.distinct_source_ips as usize,
            denial_burst: raw.denial_burst,
            spike_factor: raw.spike_factor,
            spike_min_requests: raw.spike_min_requests,
            spike_interval: raw.spike_interval,
            learning_period: raw.learning_period,
            max_identities: raw.max_identities,
            idle_timeout: raw.idle_timeout,
        }))
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    fn spike_interval_ms(&self) -> u64 {
        self.spike_interval.as_millis() as u64
    }

    fn learning_ms(&self) -> u64 {
        self.learning_period.as_millis() as u64
    }
}

/// Who the signals are about: a certificate, or the source address of a client without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    Certificate([u8; 32]),
    /// A legacy API key, by its `limit_id`: a copied key shows as one key from many places.
    ApiKey([u8; 32]),
    SourceIp(IpAddr),
}

/// One answered request, as `Exchange::finish` reports it.
pub struct Request<'a> {
    pub who: Watched,
    /// The certificate's hex SHA-256 and subject, for the signal.
    pub identity: Option<(&'a str, &'a str)>,
    pub owner: Option<&'a str>,
    pub source: IpAddr,
    /// The route's inventory id (stable by name across reloads) and its name.
    pub route: Option<(u32, &'a str)>,
    /// Answered 401, 403 or 429.
    pub refused: bool,
}

/// One raised signal, as logged and as `GET /anomalies` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyEvent {
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: AnomalyKind,
    /// Hex SHA-256 of the certificate, `api_key:<id>` for a legacy API key, or the source
    /// address of a client with neither.
    pub identity: String,
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub route: Option<String>,
    pub source_ip: String,
    pub detail: String,
}

pub struct Anomalies {
    epoch: Instant,
    /// foldhash, seeded per process, instead of SipHash: the keys are certificate digests and
    /// source addresses, which a client cannot pick to collide, and this runs per request.
    tracks: DashMap<Watched, Track, foldhash::fast::RandomState>,
    /// Entries in `tracks` (its own `len` visits every shard).
    tracked: AtomicUsize,
    /// Most recent last; locked only to add a raised signal or to read them.
    recent: Mutex<VecDeque<AnomalyEvent>>,
    counters: [IntCounter; 4],
}

impl Anomalies {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            epoch: Instant::now(),
            tracks: DashMap::default(),
            tracked: AtomicUsize::new(0),
            recent: Mutex::new(VecDeque::with_capacity(64)),
            counters: AnomalyKind::ALL.map(|k| metrics.anomaly(k.label())),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Folds one request into its identity's state and raises what it sets off.
    pub fn observe(&self, spec: &AnomalySpec, r: &Request<'_>) {
        let seen = Seen {
            now_ms: self.now_ms(),
            source: r.source,
            is_credential: !matches!(r.who, Watched::SourceIp(_)),
            route: r.route,
            refused: r.refused,
        };
        let mut raised: Vec<(AnomalyKind, String)> = Vec::new();
        let collect = |k, d| raised.push((k, d));
        if let Some(mut t) = self.tracks.get_mut(&r.who) {
            t.observe(spec, &seen, collect);
        } else if self.tracked.load(Ordering::Relaxed) < spec.max_identities {
            let mut t = Track::new(seen.now_ms);
            t.observe(spec, &seen, collect);
            if self.tracks.insert(r.who, t).is_none() {
                self.tracked.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (kind, detail) in raised {
            self.raise(kind, r, detail);
        }
    }

    fn raise(&self, kind: AnomalyKind, r: &Request<'_>, detail: String) {
        self.counters[kind as usize].inc();
        let identity = match (r.identity, r.who) {
            (Some((hash, _)), _) => hash.to_string(),
            (None, Watched::SourceIp(ip)) => ip.to_string(),
            (None, Watched::Certificate(h) | Watched::ApiKey(h)) => hex::encode(h),
        };
        let event = AnomalyEvent {
            time: crate::util::time::fmt_time(crate::util::time::unix_now()),
            kind,
            identity,
            subject: r
                .identity
                .map(|(_, s)| bounded(s, LOG_FIELD_MAX).into_owned()),
            owner: r.owner.map(str::to_string),
            route: r.route.map(|(_, name)| name.to_string()),
            source_ip: r.source.to_string(),
            detail,
        };
        tracing::warn!(
            target: "certgate::anomaly",
            kind = kind.label(),
            identity = %event.identity,
            subject = event.subject.as_deref(),
            owner = event.owner.as_deref(),
            route = event.route.as_deref(),
            source_ip = %event.source_ip,
            detail = %event.detail,
            "anomaly"
        );
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The most recent signals, newest first, optionally of one kind.
    pub fn recent(&self, kind: Option<AnomalyKind>) -> Vec<AnomalyEvent> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .rev()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .cloned()
            .collect()
    }

    /// Forgets identities not seen for `idle_timeout` (all of them when signals are off).
    pub fn sweep(&self, spec: Option<&AnomalySpec>) {
        let now = self.now_ms();
        let idle = spec.map_or(0, |s| s.idle_timeout.as_millis() as u64);
        self.tracks
            .retain(|_, t| spec.is_some() && now.saturating_sub(t.last_ms) < idle);
        self.tracked.store(self.tracks.len(), Ordering::Relaxed);
    }

    /// Identities tracked now.
    pub fn len(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_thresholds_name_their_key() {
        let bad = |f: fn(&mut RawAnomaly)| {
            let mut raw = RawAnomaly::default();
            f(&mut raw);
            AnomalySpec::compile(&raw).unwrap_err().0
        };
        assert_eq!(bad(|r| r.window = Duration::ZERO), "window");
        assert_eq!(bad(|r| r.distinct_source_ips = 0), "distinct_source_ips");
        assert_eq!(bad(|r| r.distinct_source_ips = 1000), "distinct_source_ips");
        assert_eq!(bad(|r| r.denial_burst = 0), "denial_burst");
        assert_eq!(bad(|r| r.spike_factor = 0.5), "spike_factor");
        assert_eq!(bad(|r| r.spike_factor = f64::NAN), "spike_factor");
        assert_eq!(bad(|r| r.max_identities = 0), "max_identities");
        let off = RawAnomaly {
            enabled: false,
            ..RawAnomaly::default()
        };
        assert_eq!(AnomalySpec::compile(&off), Ok(None));
    }

    #[test]
    fn signals_are_kept_newest_first_and_bounded() {
        let metrics = Metrics::new();
        let a = Anomalies::new(&metrics);
        let spec = AnomalySpec::compile(&RawAnomaly {
            denial_burst: 1,
            ..RawAnomaly::default()
        })
        .unwrap()
        .unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let req = Request {
            who: Watched::SourceIp(ip),
            identity: None,
            owner: None,
            source: ip,
            route: Some((0, "r")),
            refused: true,
        };
        a.observe(&spec, &req);
        a.observe(&spec, &req);
        let raised = a.recent(None);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, AnomalyKind::DenialBurst);
        assert_eq!(raised[0].identity, "127.0.0.1");
        assert_eq!(a.counters[AnomalyKind::DenialBurst as usize].get(), 1);
        for i in 0..RECENT + 50 {
            a.raise(AnomalyKind::RateSpike, &req, i.to_string());
        }
        let all = a.recent(None);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].detail, (RECENT + 49).to_string());
        assert!(
            a.recent(Some(AnomalyKind::DenialBurst)).is_empty(),
            "pushed out"
        );
        assert_eq!(a.len(), 1);
        a.sweep(Some(&spec));
        assert_eq!(a.len(), 1, "not idle yet");
        a.sweep(None);
        assert!(a.is_empty());
    }
}
