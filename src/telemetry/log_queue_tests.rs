use super::*;
use std::sync::atomic::AtomicBool;

/// An `out` that collects what is written, and can be held shut (a stalled stdout).
#[derive(Clone, Default)]
struct Sink {
    bytes: Arc<Mutex<Vec<u8>>>,
    held: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        while self.held.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines(sink: &Sink) -> Vec<String> {
    String::from_utf8(sink.bytes.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
    let sink = Sink::default();
    let (queue, guard) = LogQueue::new(sink.clone(), 8).unwrap();
    for i in 0..1000 {
        log(&queue, &format!("line {i}"));
    }
    drop(guard);
    let got = lines(&sink);
    assert_eq!(got.len(), 1000);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}"))
    );
    // Written in bursts, not one write per line.
    assert!(sink.writes.load(Ordering::Acquire) < 1000);
}

#[test]
fn a_full_queue_makes_the_logger_wait_and_loses_nothing() {
    let sink = Sink::default();
    sink.held.store(true, Ordering::Release);
    let (queue, guard) = LogQueue::new(sink.clone(), 2).unwrap();
    let pushed = Arc::new(AtomicUsize::new(0));
    // 10 KB lines: the writer's 64 KB buffer fills after a few and its write stalls; then two
    // lines wait in the queue and the logger waits for room.
    let line = |i: usize| format!("{i:0>10000}");
    let logger = {
        let (queue, pushed) = (queue.clone(), pushed.clone());
        std::thread::spawn(move || {
            for i in 0..100 {
                log(&queue, &line(i));
                pushed.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let stalled = pushed.load(Ordering::Acquire);
    assert!(
        stalled < 20,
        "{stalled} lines went into a queue of 2 behind a stalled writer"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pushed.load(Ordering::Acquire), stalled);
    sink.held.store(false, Ordering::Release);
    logger.join().unwrap();
    drop(guard);
    assert_eq!(lines(&sink), (0..100).map(line).collect::<Vec<_>>());
}

#[test]
fn lines_logged_after_shutdown_are_dropped_without_blocking() {
    let sink = Sink::default();
    let (queue, guard) = LogQueue::new(sink.clone(), 1).unwrap();
    drop(guard);
    for i in 0..10 {
        log(&queue, &format!("late {i}"));
    }
    assert!(lines(&sink).is_empty());
}

/// One line, as tracing's formatter writes an event: one `write_all`.
fn log(queue: &LogQueue, line: &str) {
    let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(queue);
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
}
