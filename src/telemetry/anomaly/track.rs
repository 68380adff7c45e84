//! What the gateway remembers about one identity for the anomaly signals, and the rules that
//! raise them. Pure: time comes in as milliseconds, nothing here logs or counts. Memory is
//! bounded per identity: at most `distinct_source_ips + 1` addresses and [`MAX_ROUTES`] routes.

use std::net::IpAddr;

use super::{AnomalyKind, AnomalySpec};

/// Routes remembered per identity for new_route; calls to further routes are not judged.
pub const MAX_ROUTES: usize = 64;

/// Source addresses listed in a shared_credential detail.
const IPS_SHOWN: usize = 8;

/// One request as the signals see it.
pub struct Seen<'a> {
    pub now_ms: u64,
    pub source: IpAddr,
    /// Whether source addresses say anything (a certificate or an API key, not a bare source
    /// IP).
    pub is_credential: bool,
    /// The route's inventory id, and its name for details; `None` when no route matched.
    pub route: Option<(u32, &'a str)>,
    /// Answered 401, 403 or 429.
    pub refused: bool,
}

/// Per-identity state.
#[derive(Debug)]
pub struct Track {
    first_ms: u64,
    pub last_ms: u64,
    /// Source addresses seen within the window, with when each was last seen.
    ips: Vec<(IpAddr, u64)>,
    denials: SlidingCount,
    spike: Spike,
    routes: Vec<u32>,
    /// When each kind was last raised (ms + 1; 0 = never), by [`AnomalyKind::ALL`] index.
    raised: [u64; 4],
}

impl Track {
    pub fn new(now_ms: u64) -> Self {
        Self {
            first_ms: now_ms,
            last_ms: now_ms,
            ips: Vec::new(),
            denials: SlidingCount::new(now_ms),
            spike: Spike::new(now_ms),
            routes: Vec::new(),
            raised: [0; 4],
        }
    }

    /// Folds one request in; `raise` gets each signal it sets off, with its detail.
    pub fn observe(
        &mut self,
        spec: &AnomalySpec,
        s: &Seen<'_>,
        mut raise: impl FnMut(AnomalyKind, String),
    ) {
        let now = s.now_ms;
        self.last_ms = now;
        if s.is_credential && self.note_source(spec, s.source, now) {
            let shown: Vec<String> = self
                .ips
                .iter()
                .take(IPS_SHOWN)
                .map(|(ip, _)| ip.to_string())
                .collect();
            if self.may_raise(AnomalyKind::SharedCredential, spec, now) {
                raise(
                    AnomalyKind::SharedCredential,
                    format!(
                        "one credential from {} source addresses within {}: {}",
                        self.ips.len(),
                        humantime::format_duration(spec.window),
                        shown.join(", ")
                    ),
                );
            }
        }
        if s.refused {
            let n = self.denials.add(now, spec.window_ms());
            if n > f64::from(spec.denial_burst)
                && self.may_raise(AnomalyKind::DenialBurst, spec, now)
            {
                raise(
                    AnomalyKind::DenialBurst,
                    format!(
                        "{} refused requests within {} (threshold {})",
                        n.round(),
                        humantime::format_duration(spec.window),
                        spec.denial_burst
                    ),
                );
            }
        }
        if let Some((count, average)) = self.spike.add(now, spec)
            && self.may_raise(AnomalyKind::RateSpike, spec, now)
        {
            raise(
                AnomalyKind::RateSpike,
                format!(
                    "{count} requests in the last {} against an average of {average:.1}",
                    humantime::format_duration(spec.spike_interval)
                ),
            );
        }
        if let Some((id, name)) = s.route
            && !self.routes.contains(&id)
            && self.routes.len() < MAX_ROUTES
        {
            self.routes.push(id);
            let known_for = now.saturating_sub(self.first_ms);
            if known_for >= spec.learning_ms() {
                raise(
                    AnomalyKind::NewRoute,
                    format!(
                        "first call to route {name} after {} of calls to {} other route(s)",
                        humantime::format_duration(std::time::Duration::from_secs(
                            known_for / 1000
                        )),
                        self.routes.len() - 1
                    ),
                );
            }
        }
    }

    /// Records `ip`; true when more addresses than allowed were seen within the window.
    fn note_source(&mut self, spec: &AnomalySpec, ip: IpAddr, now: u64) -> bool {
        if let Some(e) = self.ips.iter_mut().find(|(a, _)| *a == ip) {
            e.1 = now;
            return false;
        }
        let window = spec.window_ms();
        self.ips.retain(|(_, at)| now.saturating_sub(*at) < window);
        if self.ips.len() > spec.distinct_source_ips {
            // Keep the memory bounded: the least recently seen address makes room.
            if let Some(oldest) = (0..self.ips.len()).min_by_key(|&i| self.ips[i].1) {
                self.ips.swap_remove(oldest);
            }
        }
        self.ips.push((ip, now));
        self.ips.len() > spec.distinct_source_ips
    }

    /// One signal of a kind per identity per window (new_route is once per route anyway).
    fn may_raise(&mut self, kind: AnomalyKind, spec: &AnomalySpec, now: u64) -> bool {
        let slot = &mut self.raised[kind as usize];
        if *slot != 0 && now.saturating_sub(*slot - 1) < spec.window_ms() {
            return false;
        }
        *slot = now + 1;
        true
    }
}

/// Events in a sliding window, estimated from the current and the previous fixed window
/// (the previous one weighted by how much of it is still inside the sliding window).
#[derive(Debug)]
struct SlidingCount {
    start_ms: u64,
    current: u32,
    previous: u32,
}

impl SlidingCount {
    fn new(now_ms: u64) -> Self {
        Self {
            start_ms: now_ms,
            current: 0,
            previous: 0,
        }
    }

    /// Counts one event; the estimate of events within the last `window` ms.
    fn add(&mut self, now: u64, window: u64) -> f64 {
        let elapsed = now.saturating_sub(self.start_ms);
        if elapsed >= 2 * window {
            self.previous = 0;
            self.current = 0;
            self.start_ms = now;
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.start_ms += window;
        }
        self.current = self.current.saturating_add(1);
        let into = now.saturating_sub(self.start_ms) as f64 / window as f64;
        f64::from(self.current) + f64::from(self.previous) * (1.0 - into).max(0.0)
    }
}

/// Requests per `spike_interval` against the identity's own average: the mean over its first
/// intervals, then an exponentially weighted average (weight [`SPIKE_WEIGHT`]), idle intervals
/// counting as zero.
#[derive(Debug)]
struct Spike {
    start_ms: u64,
    count: u32,
    intervals: u32,
    average: f64,
}

/// Weight of the newest interval once the average has [`1 / SPIKE_WEIGHT`] intervals behind it.
const SPIKE_WEIGHT: f64 = 0.05;

/// Intervals of history needed before a spike is judged.
pub const SPIKE_HISTORY: u32 = 3;

impl Spike {
    fn new(now_ms: u64) -> Self {
        Self {
            start_ms: now_ms,
            count: 0,
            intervals: 0,
            average: 0.0,
        }
    }

    /// Counts one request; `Some((count, average))` when the current interval is a spike.
    fn add(&mut self, now: u64, spec: &AnomalySpec) -> Option<(u32, f64)> {
        let interval = spec.spike_interval_ms();
        let elapsed = now.saturating_sub(self.start_ms);
        if elapsed >= interval {
            let done = elapsed / interval;
            // Idle intervals beyond a few hundred leave the average at zero either way.
            for i in 0..done.min(400) {
                let x = if i == 0 { f64::from(self.count) } else { 0.0 };
                self.intervals = self.intervals.saturating_add(1);
                let w = (1.0 / f64::from(self.intervals)).max(SPIKE_WEIGHT);
                self.average += w * (x - self.average);
            }
            if done > 400 {
                self.average = 0.0;
            }
            self.start_ms += done * interval;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        let judged = self.intervals >= SPIKE_HISTORY && self.count >= spec.spike_min_requests;
        (judged && f64::from(self.count) > spec.spike_factor * self.average)
            .then_some((self.count, self.average))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawAnomaly;

    fn spec(f: impl FnOnce(&mut RawAnomaly)) -> AnomalySpec {
        let mut raw = RawAnomaly::default();
        f(&mut raw);
        AnomalySpec::compile(&raw).unwrap().unwrap()
    }

    fn seen(now_ms: u64, ip: [u8; 4], route: Option<(u32, &str)>, refused: bool) -> Seen<'_> {
        Seen {
            now_ms,
            source: IpAddr::from(ip),
            is_credential: true,
            route,
            refused,
        }
    }

    fn run(t: &mut Track, spec: &AnomalySpec, s: &Seen<'_>) -> Vec<AnomalyKind> {
        let mut raised = Vec::new();
        t.observe(spec, s, |k, _| raised.push(k));
        raised
    }

    #[test]
    fn shared_credential_once_per_window_and_memory_bounded() {
        let spec = spec(|r| r.distinct_source_ips = 2);
        let mut t = Track::new(0);
        assert!(run(&mut t, &spec, &seen(1, [10, 0, 0, 1], None, false)).is_empty());
        assert!(run(&mut t, &spec, &seen(2, [10, 0, 0, 2], None, false)).is_empty());
        assert!(run(&mut t, &spec, &seen(3, [10, 0, 0, 1], None, false)).is_empty());
        assert_eq!(
            run(&mut t, &spec, &seen(4, [10, 0, 0, 3], None, false)),
            [AnomalyKind::SharedCredential]
        );
        for i in 4..100 {
            assert!(run(&mut t, &spec, &seen(5, [10, 0, 0, i], None, false)).is_empty());
        }
        assert!(t.ips.len() <= 3, "{}", t.ips.len());
        // Addresses older than the window no longer count.
        let later = 4 + 600_000;
        assert!(run(&mut t, &spec, &seen(later + 10, [10, 0, 1, 1], None, false)).is_empty());
    }

    #[test]
    fn denial_burst_over_the_threshold_in_the_window() {
        let spec = spec(|r| r.denial_burst = 3);
        let mut t = Track::new(0);
        for i in 0..3 {
            assert!(run(&mut t, &spec, &seen(i, [10, 0, 0, 1], None, true)).is_empty());
        }
        assert!(run(&mut t, &spec, &seen(5, [10, 0, 0, 1], None, false)).is_empty());
        assert_eq!(
            run(&mut t, &spec, &seen(6, [10, 0, 0, 1], None, true)),
            [AnomalyKind::DenialBurst]
        );
        // Spread thinly over many windows, refusals never add up to a burst.
        let mut t = Track::new(0);
        for i in 0..50u64 {
            let raised = run(&mut t, &spec, &seen(i * 300_000, [10, 0, 0, 1], None, true));
            assert!(raised.is_empty(), "{i}");
        }
    }

    #[test]
    fn rate_spike_against_the_identitys_own_average() {
        let spec = spec(|r| {
            r.spike_interval = std::time::Duration::from_secs(1);
            r.spike_min_requests = 20;
            r.spike_factor = 5.0;
        });
        let mut t = Track::new(0);
        // Ten requests a second for five seconds: steady, no spike.
        for ms in (0..5000).step_by(100) {
            assert!(run(&mut t, &spec, &seen(ms, [10, 0, 0, 1], None, false)).is_empty());
        }
        // Then 60 in one second: more than 5 × 10.
        let raised: Vec<_> = (0..60)
            .flat_map(|i| run(&mut t, &spec, &seen(5000 + i, [10, 0, 0, 1], None, false)))
            .collect();
        assert_eq!(raised, [AnomalyKind::RateSpike]);
        // A new identity has no history to spike against.
        let mut fresh = Track::new(0);
        for i in 0..200 {
            assert!(run(&mut fresh, &spec, &seen(i, [10, 0, 0, 1], None, false)).is_empty());
        }
    }

    #[test]
    fn new_route_only_after_the_learning_period() {
        let spec = spec(|r| r.learning_period = std::time::Duration::from_secs(60));
        let mut t = Track::new(0);
        assert!(
            run(
                &mut t,
                &spec,
                &seen(0, [10, 0, 0, 1], Some((1, "a")), false)
            )
            .is_empty()
        );
        assert!(
            run(
                &mut t,
                &spec,
                &seen(10, [10, 0, 0, 1], Some((2, "b")), false)
            )
            .is_empty()
        );
        assert!(
            run(
                &mut t,
                &spec,
                &seen(70_000, [10, 0, 0, 1], Some((1, "a")), false)
            )
            .is_empty()
        );
        let mut detail = String::new();
        t.observe(
            &spec,
            &seen(70_001, [10, 0, 0, 1], Some((3, "c")), false),
            |k, d| {
                assert_eq!(k, AnomalyKind::NewRoute);
                detail = d;
            },
        );
        assert!(detail.contains("route c"), "{detail}");
        assert!(
            run(
                &mut t,
                &spec,
                &seen(70_002, [10, 0, 0, 1], Some((3, "c")), false)
            )
            .is_empty()
        );
        for h in 10..200 {
            run(
                &mut t,
                &spec,
                &seen(80_000, [10, 0, 0, 1], Some((h, "x")), false),
            );
        }
        assert_eq!(t.routes.len(), MAX_ROUTES);
    }
}
