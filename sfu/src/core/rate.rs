//! A token bucket in bytes: what a participant may send through the data
//! channel relay per second, with a burst allowance (a file transfer's
//! window, a chat paste) on top.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ByteBudget {
    /// Bytes per second refilled.
    rate: u64,
    /// Bytes saved at most.
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl ByteBudget {
    /// Starts full. A `rate` of 0 means no limit.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        ByteBudget { rate, burst, tokens: burst, last: now }
    }

    /// Takes `n` bytes if the budget has them; false (nothing taken) if not.
    pub fn take(&mut self, n: usize, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        let refill = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(self.burst);
            self.last = now;
        }
        match self.tokens.checked_sub(n as u64) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(1000, 3000, t0);
        assert!(b.take(3000, t0), "the burst is there at once");
        assert!(!b.take(1, t0), "then nothing");
        assert!(b.take(500, t0 + Duration::from_millis(500)), "half a second refills half the rate");
        assert!(!b.take(600, t0 + Duration::from_millis(1000)), "only 500 more came");
        assert!(b.take(3000, t0 + Duration::from_secs(60)), "a long pause refills to the burst, no more");
        assert!(!b.take(1, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(0, 0, t0);
        assert!(b.take(usize::MAX, t0));
    }
}
