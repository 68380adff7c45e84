//! Wall-clock seconds: exact, coarse (for the request path) and formatted for humans.

/// Unix seconds from a clock a background thread refreshes four times a second: the request
/// path reads it with one atomic load instead of asking the OS (expiry checks and "last seen"
/// only need seconds).
pub fn coarse_unix_now() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NOW: AtomicI64 = AtomicI64::new(0);
    static TICKER: std::sync::Once = std::sync::Once::new();
    TICKER.call_once(|| {
        NOW.store(unix_now(), Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("certgate-clock".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    NOW.store(unix_now(), Ordering::Relaxed);
                }
            });
        if spawned.is_err() {
            // Without the ticker the value would freeze; fall back to the OS clock.
            NOW.store(0, Ordering::Relaxed);
        }
    });
    match NOW.load(Ordering::Relaxed) {
        0 => unix_now(),
        t => t,
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch (quota windows).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC, for humans.
pub fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| unix.to_string())
}

/// A duration as an operator writes it in the config: "90d", "12h", "30m", "45s" when whole,
/// else humantime's form.
pub fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() == 0 && s > 0 {
        for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
            if s.is_multiple_of(n) {
                return format!("{}{unit}", s / n);
            }
        }
    }
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod short_duration_tests {
    use super::short_duration;
    use std::time::Duration;

    #[test]
    fn whole_units_read_as_written() {
        assert_eq!(short_duration(Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(short_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(short_duration(Duration::from_secs(90)), "90s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1s 500ms");
    }
}
