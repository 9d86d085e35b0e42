//! Merges and throttles keyframe requests per published track, so a room of
//! subscribers asking at once costs the publisher one keyframe.

use std::time::{Duration, Instant};

/// At most one request per track in this window. A keyframe costs the
/// publisher several times a delta frame's bandwidth; 300 ms still lets a new
/// subscriber see video well within a second.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last_sent: Option<Instant>,
    /// A request arrived inside the window; send it when the window ends.
    pending: bool,
}

impl KeyframeThrottle {
    /// Returns true when a request should go to the publisher now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now < t + KEYFRAME_INTERVAL => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a merged request is waiting, the time it may be sent.
    pub fn due(&self) -> Option<Instant> {
        if self.pending {
            self.last_sent.map(|t| t + KEYFRAME_INTERVAL)
        } else {
            None
        }
    }

    /// Releases a waiting request if its window has ended.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(due) if now >= due => self.request(now),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_requests_in_a_window() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(10)));
        assert!(!k.request(t0 + Duration::from_millis(20)));
        assert!(!k.poll(t0 + Duration::from_millis(100)));
        assert!(k.poll(t0 + KEYFRAME_INTERVAL));
        assert!(!k.poll(t0 + KEYFRAME_INTERVAL * 2));
    }
}
