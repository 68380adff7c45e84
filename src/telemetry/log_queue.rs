//! The queue between the threads that log and the one thread that writes the log.
//!
//! Lines are formatted where they are logged and queued; a writer thread writes them out, so the
//! request path never waits on stdout. The queue is bounded ([`LogQueue::new`]'s `limit`), and a
//! full queue makes the logging thread wait rather than drop the line (the access log is an audit
//! trail). Its memory is taken as lines arrive and given back as they are written: an array
//! queue with every slot allocated and initialised up front (tracing-appender's) kept 1 MB
//! resident for 32,768 lines before the first request. The writer thread also writes what has
//! queued up in one go and flushes only when the queue is empty: one system call per burst, not
//! per line.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

enum Msg {
    Line(Vec<u8>),
    /// Write what is queued, flush and stop.
    Shutdown,
}

struct Shared {
    /// Lines queued and not yet written.
    queued: AtomicUsize,
    limit: usize,
    /// Signalled when a write takes the queue below its limit.
    room: Condvar,
    room_lock: Mutex<()>,
}

/// Where log lines go: cheap to clone, one per subscriber layer.
#[derive(Clone)]
pub struct LogQueue {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

/// Dropping it writes out what is queued (waiting at most a second) and stops the writer thread.
pub struct LogGuard {
    tx: Sender<Msg>,
    done: Receiver<()>,
}

impl LogQueue {
    /// Starts the writer thread, writing to `out`; at most `limit` lines wait in the queue.
    pub fn new<W: Write + Send + 'static>(
        out: W,
        limit: usize,
    ) -> std::io::Result<(Self, LogGuard)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("certgate-log".into())
            .spawn(move || {
                write_lines(rx, out, &writer);
                let _ = done_tx.send(());
            })?;
        Ok((
            Self {
                tx: tx.clone(),
                shared,
            },
            LogGuard { tx, done },
        ))
    }

    /// Queues one line; waits while the queue is full.
    fn push(&self, line: Vec<u8>) {
        let s = &*self.shared;
        if s.queued.fetch_add(1, Ordering::AcqRel) >= s.limit {
            let mut guard = s.room_lock.lock().unwrap_or_else(|e| e.into_inner());
            // The timeout only bounds a missed signal; the writer signals every write that makes
            // room.
            while s.queued.load(Ordering::Acquire) > s.limit {
                guard = match s.room.wait_timeout(guard, Duration::from_millis(10)) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        if self.tx.send(Msg::Line(line)).is_err() {
            // The writer thread has stopped (after shutdown): the line cannot be written.
            s.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The writer thread: a burst of queued lines is written together and flushed once the queue is
/// empty. A failing `out` (stdout closed) loses the lines but never stops the loggers.
fn write_lines<W: Write>(rx: Receiver<Msg>, out: W, shared: &Shared) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut next = rx.recv().ok();
    while let Some(msg) = next {
        let Msg::Line(line) = msg else { break };
        let _ = out.write_all(&line);
        drop(line);
        if shared.queued.fetch_sub(1, Ordering::AcqRel) > shared.limit {
            let _guard = shared.room_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.room.notify_all();
        }
        next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(_) => {
                let _ = out.flush();
                rx.recv().ok()
            }
        };
    }
    let _ = out.flush();
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if self.tx.send(Msg::Shutdown).is_ok() {
            let _ = self.done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// One event's output: tracing's formatter writes each event with one `write_all`, so each
/// `write` is one whole line.
pub struct LineWriter<'a>(&'a LogQueue);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
#[path = "log_queue_tests.rs"]
mod tests;
