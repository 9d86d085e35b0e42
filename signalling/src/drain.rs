//! Graceful drain, for restarts that do not cut calls. On the first stop
//! signal the server takes no new rooms and no new call requests (`/readyz`
//! answers 503, so a load balancer sends newcomers elsewhere), while the
//! calls in progress go on: their participants may still reconnect, resume
//! or join them, and calls already queued may still be accepted. The server
//! stops when the last call has ended and the queue is empty, when
//! `--drain-timeout` has passed, or at a second signal; then every client
//! still there is told `server_shutdown`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::AppState;

/// How often a drain looks whether the calls have ended.
const POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    pub fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Why a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No participant left and no call waiting.
    Idle,
    TimedOut,
    /// A second stop signal.
    Interrupted,
}

/// Drains `state`: returns when the server may stop (see the module docs).
pub async fn drain(state: &AppState, timeout: Duration, second_signal: impl Future<Output = ()>) -> Ended {
    state.drain.start();
    let (participants, queued) = in_progress(state).await;
    tracing::info!(
        participants,
        queued,
        "draining: no new rooms or calls; stopping when the calls in progress end (at most {}), \
         or at a second signal",
        humantime::format_duration(timeout)
    );
    let idle = async {
        loop {
            if in_progress(state).await == (0, 0) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let ended = tokio::select! {
        _ = idle => Ended::Idle,
        _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        _ = second_signal => Ended::Interrupted,
    };
    let (participants, queued) = in_progress(state).await;
    match ended {
        Ended::Idle => tracing::info!("drained: the last call has ended"),
        Ended::TimedOut => tracing::warn!(participants, queued, "drain timeout passed; stopping"),
        Ended::Interrupted => tracing::warn!(participants, queued, "second stop signal; stopping now"),
    }
    ended
}

/// Participants in rooms, and call requests waiting for an agent.
async fn in_progress(state: &AppState) -> (usize, i64) {
    // A store error counts as a call waiting: better to wait for the
    // timeout than to drop a customer.
    let queued = state.calls.store.queued_calls().await.unwrap_or(1);
    (state.caps.participants(), queued)
}
