//! The HTTP/1.1 request-head deadline (`header_read_timeout`) without a timer per request.
//!
//! hyper arms the deadline before every request head and drops it once the head is in: with
//! tokio's timer that is an allocation and an entry put into and taken out of the timer wheel
//! per request, a cost paid by every kept-alive request for the sake of the rare slow one. The
//! sleeps of [`PolledTimer`] only read the clock when hyper polls them, which it does whenever
//! the connection is polled while a head is incomplete: on each of the client's bytes, and on
//! the connection's own periodic tick (`drive` in `connection.rs`, every quarter of the
//! timeout). So a head still incomplete at the deadline is cut at most a quarter of the timeout
//! later, and an idle keep-alive connection is closed the same way.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// hyper's timer for HTTP/1.1 server connections driven by `drive`; see the module comment.
#[derive(Clone, Copy, Debug)]
pub(super) struct PolledTimer;

/// How often `drive` must poll an HTTP/1.1 connection for `timeout` to hold: a quarter of it,
/// within 100 ms and 15 s.
pub(super) fn poll_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
}

impl Timer for PolledTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline))
    }
}

/// Ready once the clock reads `.0` or later. It registers no waker: whoever polls the
/// connection polls it again (see the module comment).
struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(sleep: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        sleep.as_mut().poll(&mut cx)
    }

    #[test]
    fn deadline_is_pending_before_and_ready_after() {
        let mut later = PolledTimer.sleep(Duration::from_secs(60));
        assert_eq!(poll_once(&mut later), Poll::Pending);
        let mut past = PolledTimer.sleep_until(Instant::now());
        assert_eq!(poll_once(&mut past), Poll::Ready(()));
        let mut soon = PolledTimer.sleep(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(poll_once(&mut soon), Poll::Ready(()));
    }

    #[test]
    fn poll_period_is_a_quarter_within_bounds() {
        assert_eq!(
            poll_period(Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
        assert_eq!(
            poll_period(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
        assert_eq!(
            poll_period(Duration::from_secs(600)),
            Duration::from_secs(15)
        );
    }
}
