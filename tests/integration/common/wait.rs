//! Waiting for something to happen, never sleeping and hoping: every wait polls a probe until
//! it holds or a deadline passes, and a timeout names what was awaited and what was last seen.

use std::future::Future;

use super::*;

/// Polls `probe` every 20 ms until it returns `Ok(value)`, and returns the value. `Err(seen)`
/// is "not yet"; once `within` has passed, panics naming `what` and the last `seen`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` once `within` has passed.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, within, || {
        let done = cond();
        async move { if done { Ok(()) } else { Err("not yet".into()) } }
    })
    .await
}

/// [`wait_until`] for a test without a runtime (it blocks the thread between polls).
pub fn wait_until_blocking(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
