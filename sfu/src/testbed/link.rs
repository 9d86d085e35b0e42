//! A client's downlink, and the estimate its browser would report of it: in
//! the test bed's virtual time, and in the load tester's real time (its
//! userspace shaper).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A rate-limited link with a drop-tail queue: a datagram (`T`, of the
/// length given) leaves once those before it have (at `rate` bits/s) and is
/// dropped when it would wait longer than `max_queue`.
pub struct Link<T> {
    pub rate: u64,
    pub max_queue: Duration,
    free_at: Option<Instant>,
    queue: VecDeque<(Instant, T)>,
    /// Datagrams dropped so far.
    pub dropped: u64,
}

impl<T> Link<T> {
    pub fn new(rate: u64, max_queue: Duration) -> Self {
        Link { rate, max_queue, free_at: None, queue: VecDeque::new(), dropped: 0 }
    }

    /// Queues `t` (`bytes` long) at `now`, or drops it when the queue is full.
    pub fn push(&mut self, t: T, bytes: usize, now: Instant) {
        let start = self.free_at.map_or(now, |f| f.max(now));
        if start.saturating_duration_since(now) > self.max_queue {
            self.dropped += 1;
            return;
        }
        let done = start + Duration::from_secs_f64(bytes as f64 * 8.0 / self.rate as f64);
        self.free_at = Some(done);
        self.queue.push_back((done, t));
    }

    /// The next datagram delivered by `now`.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        self.queue.front().filter(|(at, _)| *at <= now)?;
        self.queue.pop_front().map(|(_, t)| t)
    }

    /// How long a datagram sent now would wait.
    fn queue_delay(&self, now: Instant) -> Duration {
        self.free_at.map_or(Duration::ZERO, |f| f.saturating_duration_since(now))
    }

    /// When something next happens on the link: a delivery or a report.
    pub fn next_event(&self, estimator: &ReceiveEstimator) -> Option<Instant> {
        let delivery = self.queue.front().map(|(at, _)| *at);
        [delivery, estimator.next_report].into_iter().flatten().min()
    }
}

/// What a browser's receive-side estimator reports (REMB) of a link, after
/// libwebrtc's: overuse (a queue that builds, or drops) brings the estimate
/// down to 85 % of what arrived; otherwise it grows by 8 % a second, but not
/// past 1.5× what arrived plus 10 kb/s. Reports go every 200 ms once a
/// second of traffic came. Queue delay stands in for the delay trend the
/// browser infers from abs-send-time: the model needs no clock of its own.
#[derive(Default)]
pub struct ReceiveEstimator {
    estimate: Option<f64>,
    /// Bytes that arrived over the last second.
    arrivals: VecDeque<(Instant, usize)>,
    next_report: Option<Instant>,
    last_delay: Duration,
    dropped_seen: u64,
}

const REPORT_INTERVAL: Duration = Duration::from_millis(200);
/// Queue delay above which a growing queue is overuse.
const OVERUSE_DELAY: Duration = Duration::from_millis(20);

impl ReceiveEstimator {
    pub fn arrived(&mut self, bytes: usize, now: Instant) {
        self.arrivals.push_back((now, bytes));
        self.next_report.get_or_insert(now + Duration::from_secs(1));
    }

    /// The estimate to report now (bits/s), when one is due.
    pub fn report<T>(&mut self, link: &Link<T>, now: Instant) -> Option<u64> {
        if self.next_report.is_none_or(|t| now < t) {
            return None;
        }
        while self.arrivals.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > Duration::from_secs(1)) {
            self.arrivals.pop_front();
        }
        if self.arrivals.is_empty() {
            // Nothing arrives: nothing to estimate, no report (a browser's
            // estimator sees no packets either).
            self.next_report = None;
            return None;
        }
        self.next_report = Some(now + REPORT_INTERVAL);
        let incoming = self.arrivals.iter().map(|(_, b)| *b as f64 * 8.0).sum::<f64>();
        let delay = link.queue_delay(now);
        let overuse = (delay > OVERUSE_DELAY && delay > self.last_delay) || link.dropped > self.dropped_seen;
        (self.last_delay, self.dropped_seen) = (delay, link.dropped);
        let step = 1.08f64.powf(REPORT_INTERVAL.as_secs_f64());
        let estimate = match self.estimate {
            None => incoming,
            Some(e) if overuse => e.min(0.85 * incoming),
            Some(e) => {
                let ceiling = 1.5 * incoming + 10_000.0;
                if e < ceiling {
                    (e * step).min(ceiling)
                } else {
                    e
                }
            }
        };
        self.estimate = Some(estimate);
        Some(estimate as u64)
    }
}
