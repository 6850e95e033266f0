//! Operator notices: why clients were dropped or could not connect, logged at most once per
//! [`INTERVAL`] for each kind of trouble, with the number of events since the previous line.
//! A thousand clients dropped in one burst make one line, not a thousand, and a server where
//! nothing goes wrong logs nothing.
//!
//! The first event of a quiet period is reported after [`GATHER`], so that a burst is summed
//! up in one line; later events wait until [`INTERVAL`] has passed since the previous line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How long the first event of a quiet period waits for the rest of its burst.
pub const GATHER: Duration = Duration::from_secs(1);
/// The shortest time between two lines of one kind.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What one line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events since the previous line.
    pub count: u64,
    /// From the first of them to now.
    pub over: Duration,
    /// Events since start-up.
    pub total: u64,
    /// The detail given with the most recent event (an error message), if any.
    pub detail: Option<String>,
}

/// Counts the events of one kind and logs them through its `report` function, rate-limited.
pub struct Notice {
    inner: Arc<Inner>,
}

struct Inner {
    pending: AtomicU64,
    total: AtomicU64,
    /// A line is due: the events since it was set are reported together.
    scheduled: AtomicBool,
    times: Mutex<Times>,
    detail: Mutex<Option<String>>,
    report: Box<dyn Fn(&Summary) + Send + Sync>,
}

#[derive(Default)]
struct Times {
    /// The first event not reported yet.
    first: Option<Instant>,
    /// When the previous line was logged.
    last_line: Option<Instant>,
}

impl Notice {
    pub fn new(report: impl Fn(&Summary) + Send + Sync + 'static) -> Notice {
        Notice {
            inner: Arc::new(Inner {
                pending: AtomicU64::new(0),
                total: AtomicU64::new(0),
                scheduled: AtomicBool::new(false),
                times: Mutex::default(),
                detail: Mutex::default(),
                report: Box::new(report),
            }),
        }
    }

    /// Counts `n` events. Cheap when a line is already due: two atomic operations.
    pub fn record(&self, n: u64) {
        let Some(due) = self.inner.count(n, Instant::now()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = self.inner.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(due).await;
                    inner.flush(Instant::now());
                });
            }
            // Outside the runtime (the end of shutdown): no timer to wait on.
            Err(_) => self.inner.flush(Instant::now()),
        }
    }

    /// Counts one event and keeps `detail` (say, the error) for the next line.
    pub fn record_with(&self, detail: impl Into<String>) {
        *lock(&self.inner.detail) = Some(detail.into());
        self.record(1);
    }
}

impl Inner {
    fn times(&self) -> MutexGuard<'_, Times> {
        lock(&self.times)
    }

    /// Counts `n` events at `now`; returns when to log them if no line was due yet.
    fn count(&self, n: u64, now: Instant) -> Option<Instant> {
        if n == 0 {
            return None;
        }
        self.pending.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut times = self.times();
        times.first = Some(now);
        let gathered = now + GATHER;
        Some(
            times
                .last_line
                .map_or(gathered, |last| gathered.max(last + INTERVAL)),
        )
    }

    /// Logs what was counted since the previous line. Events counted after `scheduled` is
    /// cleared schedule the next line themselves.
    fn flush(&self, now: Instant) {
        self.scheduled.store(false, Ordering::Release);
        let count = self.pending.swap(0, Ordering::AcqRel);
        if count == 0 {
            return;
        }
        let over = {
            let mut times = self.times();
            times.last_line = Some(now);
            times
                .first
                .take()
                .map_or(Duration::ZERO, |first| now - first)
        };
        let summary = Summary {
            count,
            over,
            total: self.total.load(Ordering::Relaxed),
            detail: lock(&self.detail).clone(),
        };
        (self.report)(&summary);
    }
}

/// The data under these locks is replaced whole, so a poisoned lock still holds a valid value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `1.2s`, `12s`: how long a summary covers, for log lines.
pub fn seconds(over: Duration) -> String {
    let secs = over.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else {
        format!("{secs:.0}s")
    }
}

/// Why clients were disconnected by the server, one notice per cause.
pub struct ClientDrops {
    /// Outgoing queue over `--ws_max_pending_size`: disconnected with `too_slow`.
    pub too_slow: Notice,
    /// A write did not complete within `--ws_write_timeout`.
    pub write_timeouts: Notice,
}

impl ClientDrops {
    pub fn new() -> ClientDrops {
        ClientDrops {
            too_slow: Notice::new(|s| {
                tracing::warn!(
                    count = s.count,
                    total = s.total,
                    "{} slow client(s) disconnected with too_slow in the last {}: they did not read \
                     fast enough and their outgoing queue reached --ws_max_pending_size",
                    s.count,
                    seconds(s.over)
                )
            }),
            write_timeouts: Notice::new(|s| {
                tracing::warn!(
                    count = s.count,
                    total = s.total,
                    "{} connection(s) closed in the last {}: a write to the client did not \
                     complete within --ws_write_timeout",
                    s.count,
                    seconds(s.over)
                )
            }),
        }
    }
}

impl Default for ClientDrops {
    fn default() -> Self {
        ClientDrops::new()
    }
}

/// Why one listener could not take new connections.
pub struct ListenerTrouble {
    /// `accept` failed: out of descriptors (`EMFILE`, `ENFILE`) or memory.
    pub accept_failed: Notice,
    /// Every `--max-conn` slot was taken: new connections waited in the listen queue.
    pub connection_limit: Notice,
}

impl ListenerTrouble {
    /// `address` names the listener in the lines; `max_conn` is its limit (0: none).
    pub fn new(address: String, max_conn: usize) -> ListenerTrouble {
        let listener = address.clone();
        ListenerTrouble {
            accept_failed: Notice::new(move |s| {
                let error = s.detail.as_deref().unwrap_or("unknown error");
                tracing::warn!(
                    listener = %listener,
                    count = s.count,
                    total = s.total,
                    "cannot accept new connections: {} failed accept(s) in the last {} ({error}); \
                     clients wait in the listen queue until a descriptor is free{}",
                    s.count,
                    seconds(s.over),
                    descriptor_hint(error)
                )
            }),
            connection_limit: Notice::new(move |s| {
                tracing::warn!(
                    listener = %address,
                    count = s.count,
                    total = s.total,
                    "connection limit reached {} time(s) in the last {}: all --max-conn={max_conn} \
                     slots were taken and new connections waited in the listen queue",
                    s.count,
                    seconds(s.over)
                )
            }),
        }
    }
}

/// What to do about an accept error, for the errors that have a remedy.
fn descriptor_hint(error: &str) -> &'static str {
    if error.contains("os error 24") {
        " (the process's open files limit: raise `ulimit -n`)"
    } else if error.contains("os error 23") {
        " (the system-wide open files limit: raise fs.file-max)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> (Notice, Arc<Mutex<Vec<Summary>>>) {
        let lines: Arc<Mutex<Vec<Summary>>> = Arc::default();
        let sink = lines.clone();
        let notice = Notice::new(move |s| sink.lock().unwrap().push(s.clone()));
        (notice, lines)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_burst_makes_one_line_after_the_gathering_time() {
        let (notice, lines) = counting();
        let start = Instant::now();
        let due = notice.inner.count(1, start);
        assert_eq!(due, Some(start + GATHER));
        for _ in 0..999 {
            assert_eq!(notice.inner.count(1, start), None, "a line is already due");
        }
        notice.inner.flush(start + GATHER);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].count, lines[0].total), (1000, 1000));
        assert_eq!(lines[0].over, GATHER);
    }

    #[test]
    fn later_events_wait_for_the_interval_and_are_summed() {
        let (notice, lines) = counting();
        let start = Instant::now();
        notice.inner.count(1, start);
        notice.inner.flush(start + GATHER);
        // The next event, 2 s after that line: its line comes INTERVAL after the previous one.
        let first = start + GATHER + secs(2);
        assert_eq!(
            notice.inner.count(1, first),
            Some(start + GATHER + INTERVAL)
        );
        for n in 1..5 {
            *lock(&notice.inner.detail) = Some(format!("error {n}"));
            assert_eq!(notice.inner.count(1, first + secs(n)), None);
        }
        notice.inner.flush(start + GATHER + INTERVAL);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].count, lines[1].total), (5, 6));
        assert_eq!(lines[1].detail.as_deref(), Some("error 4"));
        assert_eq!(lines[1].over, INTERVAL - secs(2));
        // Long after: the next event waits only for its burst.
        let later = start + INTERVAL * 5;
        assert_eq!(notice.inner.count(1, later), Some(later + GATHER));
    }

    #[test]
    fn nothing_is_logged_without_events() {
        let (notice, lines) = counting();
        assert_eq!(notice.inner.count(0, Instant::now()), None);
        notice.inner.flush(Instant::now());
        assert!(lines.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_line_is_logged_by_a_timer() {
        let (notice, lines) = counting();
        notice.record_with("boom");
        notice.record(2);
        let deadline = Instant::now() + GATHER * 5;
        while lines.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no line after {GATHER:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines = lines.lock().unwrap();
        assert_eq!(
            (lines[0].count, lines[0].detail.as_deref()),
            (3, Some("boom"))
        );
    }

    #[test]
    fn without_a_runtime_the_line_is_immediate() {
        let (notice, lines) = counting();
        notice.record(3);
        assert_eq!(lines.lock().unwrap()[0].count, 3);
    }
}
