//! Refused TLS handshakes, summarised: each refusal is logged in full at debug (and counted in
//! `certgate_tls_handshakes_total`), but a port scanner or an L4 health check must not flood
//! the log. The first refusal after a quiet minute gets a WARN line at once; the rest of that
//! minute is counted by result and summarised in one WARN line when the minute is over.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::authn::tls::HandshakeResult;

/// Seconds between two WARN lines about refused handshakes.
pub const SUMMARY_EVERY_SECS: i64 = 60;

#[derive(Debug, Default)]
pub struct Refusals {
    /// When the last WARN line was written (Unix seconds); 0 = never.
    warned_at: AtomicI64,
    /// Refusals since that line, by [`HandshakeResult::ALL`] index.
    since: [AtomicU64; HandshakeResult::ALL.len()],
}

impl Refusals {
    /// Counts a refusal; true when this one should be logged at WARN now (the first after a
    /// quiet minute).
    pub fn note(&self, result: HandshakeResult, now: i64) -> bool {
        let last = self.warned_at.load(Ordering::Relaxed);
        if now - last >= SUMMARY_EVERY_SECS
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return true;
        }
        let i = HandshakeResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(HandshakeResult::ALL.len() - 1);
        self.since[i].fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The refusals counted since the last WARN line, as `label=count` pairs (empty when none),
    /// and starts a new minute. Called once a minute.
    pub fn take_summary(&self, now: i64) -> Option<(u64, String)> {
        let mut total = 0;
        let mut parts = Vec::new();
        for (i, counter) in self.since.iter().enumerate() {
            let n = counter.swap(0, Ordering::Relaxed);
            if n > 0 {
                total += n;
                parts.push(format!("{}={n}", HandshakeResult::ALL[i].label()));
            }
        }
        if total == 0 {
            return None;
        }
        self.warned_at.store(now, Ordering::Relaxed);
        Some((total, parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_refusal_warns_then_a_minute_is_summarised() {
        let r = Refusals::default();
        assert!(r.note(HandshakeResult::UnknownCa, 1000));
        for _ in 0..5 {
            assert!(!r.note(HandshakeResult::NoCertificate, 1001));
        }
        assert!(!r.note(HandshakeResult::UnknownCa, 1002));
        assert_eq!(
            r.take_summary(1060),
            Some((6, "no_certificate=5, unknown_ca=1".into()))
        );
        assert_eq!(r.take_summary(1120), None);
        assert!(
            !r.note(HandshakeResult::Other, 1100),
            "within a minute of the summary"
        );
        assert!(r.note(HandshakeResult::Other, 1200));
    }
}
