//! Surviving a dropped WebSocket: a session outlives its connection for a
//! grace period, and a new connection that presents the session's resume
//! token takes it over. Nobody in the room sees a leave and join, and the
//! media path (ICE) is not touched.
//!
//! No message is lost or doubled across the switch: each side numbers the
//! messages it sends after `joined` and keeps the recent ones
//! ([`Outbox`]); a `resume` says how many the client received, the server's
//! `resumed` how many it received, and each side sends again what the other
//! missed.

use std::collections::VecDeque;

use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use dashmap::DashMap;
use rand::RngCore;
use tokio::sync::mpsc;

/// Messages a session keeps for replay. A gap wider than this (a flood of
/// events while the client was away) cannot be bridged: the resume is
/// refused and the client joins afresh.
pub const OUTBOX: usize = 512;

pub type Tx = futures_util::stream::SplitSink<WebSocket, Message>;
pub type Rx = futures_util::stream::SplitStream<WebSocket>;

/// A new connection for a session, with how many of the session's messages
/// its client has received.
pub struct Takeover {
    pub tx: Tx,
    pub rx: Rx,
    pub received: u64,
}

/// Live sessions by resume token.
#[derive(Default)]
pub struct Sessions {
    by_token: DashMap<String, mpsc::Sender<Takeover>>,
}

impl Sessions {
    /// A fresh token for a session, and where its takeovers arrive.
    pub fn register(&self) -> (String, mpsc::Receiver<Takeover>) {
        let mut bytes = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let (tx, rx) = mpsc::channel(1);
        self.by_token.insert(token.clone(), tx);
        (token, rx)
    }

    pub fn unregister(&self, token: &str) {
        self.by_token.remove(token);
    }

    /// Hands `takeover` to the session holding `token`; gives it back if
    /// there is none (unknown, or the grace period ended).
    pub fn take_over(&self, token: &str, takeover: Takeover) -> Result<(), Takeover> {
        let Some(tx) = self.by_token.get(token).map(|t| t.clone()) else { return Err(takeover) };
        tx.try_send(takeover).map_err(|e| match e {
            mpsc::error::TrySendError::Full(t) | mpsc::error::TrySendError::Closed(t) => t,
        })
    }
}

/// The messages one side sent, numbered from 1, the last [`OUTBOX`] kept.
#[derive(Debug, Default)]
pub struct Outbox {
    sent: u64,
    kept: VecDeque<String>,
}

impl Outbox {
    /// Numbers and keeps a message about to be sent.
    pub fn record(&mut self, text: &str) {
        self.sent += 1;
        if self.kept.len() == OUTBOX {
            self.kept.pop_front();
        }
        self.kept.push_back(text.to_string());
    }

    /// The messages after the first `received`, oldest first; `None` if
    /// some of them are no longer kept (or `received` is from the future).
    pub fn after(&self, received: u64) -> Option<impl Iterator<Item = &String>> {
        let missing = self.sent.checked_sub(received)?;
        let missing = usize::try_from(missing).ok().filter(|m| *m <= self.kept.len())?;
        Some(self.kept.iter().skip(self.kept.len() - missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_exactly_what_the_other_side_missed() {
        let mut o = Outbox::default();
        for m in ["a", "b", "c"] {
            o.record(m);
        }
        assert_eq!(o.after(1).unwrap().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(o.after(3).unwrap().count(), 0);
        assert!(o.after(4).is_none(), "a count past what was sent is refused");
    }

    #[test]
    fn a_gap_wider_than_the_outbox_cannot_be_bridged() {
        let mut o = Outbox::default();
        for i in 0..OUTBOX + 10 {
            o.record(&i.to_string());
        }
        assert!(o.after(5).is_none());
        assert_eq!(o.after(10).unwrap().next().map(String::as_str), Some("10"));
    }
}
