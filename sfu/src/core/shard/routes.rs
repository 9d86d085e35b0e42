//! Routes: per published track seen on this shard, who here receives it,
//! which other shards need a copy, and where keyframe requests for it go.
//! Merged keyframe requests wait in a heap for their window to end, so that
//! neither the loop's deadline nor its timer work scans every route.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::media::Mid;

use crate::core::demux::Slot;
use crate::core::ids::{ShardId, TrackId, TrackSource};
use crate::core::keyframe::KeyframeThrottle;
use crate::core::layers::{Layer, LayerStats, MAX_LAYERS};
use crate::record::Tap;

#[derive(Default)]
pub struct Route {
    pub subscribers: Vec<Slot>,
    pub remote_shards: Vec<ShardId>,
    /// Set when the publisher is on this shard.
    pub publisher: Option<(Slot, Mid)>,
    /// Shard of a remote publisher, to send keyframe requests to.
    pub publisher_shard: Option<ShardId>,
    /// Its simulcast layers as seen here (video only).
    pub layers: LayerStats,
    keyframes: [KeyframeThrottle; MAX_LAYERS],
    /// Set while the (local) publisher is recorded: its packets go to the
    /// recorder too, and which layer (the best flowing) they come from.
    pub tap: Option<(Tap, TrackSource)>,
    pub tap_layer: Option<Layer>,
}

impl Route {
    /// Someone publishes, receives or relays it.
    fn in_use(&self) -> bool {
        self.publisher.is_some() || !self.subscribers.is_empty() || !self.remote_shards.is_empty()
    }

    pub fn set_tap(&mut self, tap: Option<(Tap, TrackSource)>) {
        self.tap = tap;
        self.tap_layer = None;
    }
}

/// Where a keyframe request for a track must go.
pub enum KeyframeTarget {
    /// The publisher is here: ask it now.
    Local,
    /// Merged into the current window; sent when it ends.
    Merged,
    /// The publisher is on another shard.
    Remote(ShardId),
    None,
}

#[derive(Default)]
pub struct Routes {
    by_track: FxHashMap<TrackId, Route>,
    keyframes_due: BinaryHeap<Reverse<(Instant, TrackId, Layer)>>,
}

impl Routes {
    pub fn get(&self, track: &TrackId) -> Option<&Route> {
        self.by_track.get(track)
    }

    pub fn get_mut(&mut self, track: &TrackId) -> Option<&mut Route> {
        self.by_track.get_mut(track)
    }

    pub fn len(&self) -> usize {
        self.by_track.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TrackId, &Route)> {
        self.by_track.iter()
    }

    pub fn entry(&mut self, track: TrackId) -> &mut Route {
        self.by_track.entry(track).or_default()
    }

    pub fn add_subscriber(&mut self, track: TrackId, slot: Slot, publisher_shard: Option<ShardId>) {
        let r = self.entry(track);
        if !r.subscribers.contains(&slot) {
            r.subscribers.push(slot);
        }
        if publisher_shard.is_some() {
            r.publisher_shard = publisher_shard;
        }
    }

    /// Which other shards get a copy of the local publisher's `track`. Only
    /// for a route that exists: the publisher made it, and one that has
    /// left must not get it back.
    pub fn set_remote_shards(&mut self, track: TrackId, shards: Vec<ShardId>) {
        if let Some(r) = self.by_track.get_mut(&track) {
            r.remote_shards = shards;
            if !r.in_use() {
                self.by_track.remove(&track);
            }
        }
    }

    /// Stops sending `track` to `slot`; a route left unused goes.
    pub fn remove_subscriber(&mut self, track: TrackId, slot: Slot) {
        if let Some(r) = self.by_track.get_mut(&track) {
            r.subscribers.retain(|s| *s != slot);
            if !r.in_use() {
                self.by_track.remove(&track);
            }
        }
    }

    /// The local publisher of `track` left: nothing more to send here or to
    /// other shards (their routes go with their own unsubscriptions).
    pub fn clear_publisher(&mut self, track: TrackId) {
        if let Some(r) = self.by_track.get_mut(&track) {
            r.publisher = None;
            r.remote_shards.clear();
            r.set_tap(None);
            if !r.in_use() {
                self.by_track.remove(&track);
            }
        }
    }

    /// Takes `slot` off every route (its occupant left): whatever state its
    /// subscriptions were in (queued, offered, flowing, replaced), none may
    /// keep a route alive.
    pub fn forget_subscriber(&mut self, slot: Slot) {
        for r in self.by_track.values_mut() {
            r.subscribers.retain(|s| *s != slot);
        }
        self.prune();
    }

    /// Drops routes nobody uses any more.
    pub fn prune(&mut self) {
        self.by_track.retain(|_, r| r.in_use());
    }

    /// A subscriber asked for a keyframe of `track`'s `layer`: merged per
    /// track and layer (see [`KeyframeThrottle`]) when the publisher is here.
    pub fn keyframe_request(&mut self, track: TrackId, layer: Layer, now: Instant) -> KeyframeTarget {
        let Some(route) = self.by_track.get_mut(&track) else { return KeyframeTarget::None };
        let layer = layer.min(MAX_LAYERS as Layer - 1);
        match (route.publisher, route.publisher_shard) {
            (Some(_), _) => {
                let throttle = &mut route.keyframes[layer as usize];
                let waiting = throttle.due().is_some();
                if throttle.request(now) {
                    return KeyframeTarget::Local;
                }
                if let (false, Some(due)) = (waiting, throttle.due()) {
                    self.keyframes_due.push(Reverse((due, track, layer)));
                }
                KeyframeTarget::Merged
            }
            (None, Some(shard)) => KeyframeTarget::Remote(shard),
            (None, None) => KeyframeTarget::None,
        }
    }

    /// When the earliest merged request is due.
    pub fn next_keyframe_due(&self) -> Option<Instant> {
        self.keyframes_due.peek().map(|Reverse((t, _, _))| *t)
    }

    /// A track and layer whose merged request is due at `now`, if any.
    pub fn pop_due_keyframe(&mut self, now: Instant) -> Option<(TrackId, Layer)> {
        while let Some(&Reverse((at, track, layer))) = self.keyframes_due.peek() {
            if at > now {
                return None;
            }
            self.keyframes_due.pop();
            // `poll` opens a new window; false for an entry already served.
            if self.by_track.get_mut(&track).is_some_and(|r| r.keyframes[layer as usize].poll(now)) {
                return Some((track, layer));
            }
        }
        None
    }
}
