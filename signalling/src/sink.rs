//! Delivers media-plane events to each participant's WebSocket task.

use std::sync::Mutex;

use dashmap::DashMap;
use sfu::{ClientEvent, EventSink, ParticipantId, RecordingEvent};
use tokio::sync::mpsc;

/// Events queued per connection before it counts as too slow. Events are
/// small and rare (joins, publications, SDP); a full queue means a stuck client.
pub const CLIENT_QUEUE: usize = 256;

#[derive(Default)]
pub struct Clients {
    senders: DashMap<ParticipantId, mpsc::Sender<ClientEvent>>,
    /// Where the recorder's reports go (`recordings::follow`).
    recordings: Mutex<Option<mpsc::UnboundedSender<RecordingEvent>>>,
}

impl Clients {
    pub fn register(&self, pid: ParticipantId) -> mpsc::Receiver<ClientEvent> {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        self.senders.insert(pid, tx);
        rx
    }

    /// Sends the recorder's reports to `tx` from now on.
    pub fn follow_recordings(&self, tx: mpsc::UnboundedSender<RecordingEvent>) {
        *self.recordings.lock().expect("recordings lock") = Some(tx);
    }

    /// No more reports (the media plane has stopped): the follower ends
    /// once it has kept what was sent.
    pub fn stop_following_recordings(&self) {
        self.recordings.lock().expect("recordings lock").take();
    }

    pub fn unregister(&self, pid: ParticipantId) {
        self.senders.remove(&pid);
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

impl EventSink for Clients {
    fn deliver(&self, to: ParticipantId, event: ClientEvent) {
        let full = match self.senders.get(&to) {
            Some(tx) => tx.try_send(event).is_err(),
            None => false,
        };
        if full {
            // Dropping the sender ends the connection's event stream; its task
            // then reports `slow_consumer` and leaves the room.
            tracing::warn!(participant = %to, "signalling client too slow; disconnecting");
            self.senders.remove(&to);
        }
    }

    fn recording(&self, event: RecordingEvent) {
        // Unbounded: a few events per file every couple of seconds, and
        // losing one would leave a row wrong.
        if let Some(tx) = self.recordings.lock().expect("recordings lock").as_ref() {
            let _ = tx.send(event);
        }
    }
}
