//! Sharing one subscriber's bandwidth between the video tracks it receives.
//!
//! The estimate is the subscriber's own: its browser runs the receive-side
//! estimator on what we send (abs-send-time) and reports it with REMB a few
//! times a second (see `participant::rtc_config`). That estimate, as in
//! libwebrtc's AIMD control, never rises much above what the link actually
//! carries — at most 1.5× the incoming rate — and falls to about 85 % of it
//! when queues build. So it can say "less" at once but never "the next
//! layer fits": a layer is ~2-3× the one below. Going up is therefore a
//! trial: once the estimate has shown room above what the leg gets for a
//! hold, one track steps up one layer; if the estimate then falls below it,
//! it steps back and the next trial waits twice as long (libwebrtc's and
//! LiveKit's allocators probe the same way, with padding instead).
//!
//! Tracks are served in priority order (screen shares before cameras): they
//! step down from the back and up from the front. A track whose lowest
//! layer does not fit for a while pauses; a paused track resumes by trial.

use std::time::{Duration, Instant};

use super::layers::{Layer, LayerChoice, LayerStats, MAX_LAYERS};

/// A layer is kept while the estimate is at least this share (percent) of
/// what the leg sends: a congested link's estimate sits at ~85 % of what it
/// delivers, an uncongested one's at or above what it gets.
const KEEP_PERCENT: u64 = 85;
/// Stepping back from a failed trial, and for [`SETTLE`] after any step
/// down, the layers kept need only this share (percent) of the estimate.
const FAILED_TRIAL_KEEP_PERCENT: u64 = 70;
/// After a step down the estimate goes on falling for a while (the link's
/// queue drains, and the receiver sets it to ~85 % of what arrived while it
/// was overrun), and a layer's rate measured over one second is noisy: in
/// this window only the lower bar steps further down, so one overrun costs
/// one step, not two (each step waits for a keyframe and may freeze).
const SETTLE: Duration = Duration::from_secs(3);
/// The estimate shows room for more when at least this share (percent) of
/// what the leg sends (its ceiling is ~150 %).
const ROOM_PERCENT: u64 = 130;
/// How long the estimate must show room before a step up; doubled for each
/// recent step that fell back.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(3);
/// The hold doubles at most this many times (3 s → 48 s).
const MAX_FAILED_LIFTS: u32 = 4;
/// After a step up the estimate needs time to grow with the new rate: in
/// this window only a fall of the estimate (below [`FALL_PERCENT`] of its
/// peak since the step) means the step does not fit. A receiver's estimate
/// only ever falls on overuse: on a link that carries the step it rises or
/// holds, on one that does not it falls within a second, often by a couple
/// of percent only (to 85 % of what arrives, which can be close to what it
/// said before), so any fall counts.
const RAMP: Duration = Duration::from_secs(4);
const FALL_PERCENT: u64 = 99;
/// A step down this soon after a step up means the step failed.
const PROBATION: Duration = Duration::from_secs(10);
/// A step up that held this long clears the failures.
const STABLE: Duration = Duration::from_secs(30);
/// After stepping down because the estimate fell (the link got worse; a
/// failed trial doubles the hold instead), no step up for this long: the queue
/// that built up is still draining, and meanwhile the receiver's estimate
/// holds at what it said on overuse, which can look like room for more (a
/// trial 3 s after the step failed on every capped link it was seen on).
pub const RECOVER: Duration = Duration::from_secs(10);
/// Not even the lowest layers must have fitted this long before a track pauses.
const PAUSE_HOLD: Duration = Duration::from_secs(2);

/// One subscriber leg's estimate and what the allocator remembers of it.
#[derive(Debug, Default)]
pub struct LegBudget {
    /// The browser's latest estimate (bits/s); `None`: none yet, no limit.
    estimate: Option<u64>,
    /// The highest estimate since the last change of layers.
    peak: u64,
    /// Since when the estimate has shown room for more.
    room_since: Option<Instant>,
    /// Since when even the lowest layers have not fitted.
    starved_since: Option<Instant>,
    /// The last step up, and how many recent steps up fell back.
    lifted_at: Option<Instant>,
    /// The last step down for congestion.
    lowered_at: Option<Instant>,
    /// No step up before this (see [`RECOVER`]).
    recover_until: Option<Instant>,
    failed_lifts: u32,
}

/// One video track a leg receives, for [`LegBudget::allocate`].
pub struct Track<'a> {
    pub stats: &'a LayerStats,
    pub choice: &'a mut LayerChoice,
}

impl Track<'_> {
    fn adaptable(&self) -> bool {
        self.choice.enabled && self.stats.is_simulcast()
    }

    /// The highest active layer the subscriber wishes for (its tile's size).
    fn wish(&self, now: Instant) -> Option<Layer> {
        self.stats.best_for(self.choice.max_height, now)
    }

    /// The layer it gets now: the highest active one within wish and cap.
    fn level(&self, now: Instant) -> Option<Layer> {
        let wish = self.wish(now)?;
        let top = self.choice.cap.map_or(wish, |c| c.min(wish));
        (0..=top).rev().find(|l| self.stats.is_active(*l, now)).or_else(|| self.lowest(now))
    }

    fn lowest(&self, now: Instant) -> Option<Layer> {
        (0..MAX_LAYERS as Layer).find(|l| self.stats.is_active(*l, now))
    }

    /// What it sends the leg now (bits/s).
    fn rate(&self, now: Instant) -> u64 {
        if !self.choice.enabled || self.choice.paused {
            return 0;
        }
        self.level(now).map_or(0, |l| self.stats.bitrate(l, now))
    }

    /// One active layer down; false at the lowest.
    fn step_down(&mut self, now: Instant) -> bool {
        let Some(level) = self.level(now) else { return false };
        match (0..level).rev().find(|l| self.stats.is_active(*l, now)) {
            Some(l) => {
                self.choice.cap = Some(l);
                true
            }
            None => false,
        }
    }

    /// One active layer up within the wish (or resume); false if there is none.
    fn step_up(&mut self, now: Instant) -> bool {
        if self.choice.paused {
            self.choice.paused = false;
            self.choice.cap = self.lowest(now);
            return true;
        }
        let (Some(level), Some(wish)) = (self.level(now), self.wish(now)) else { return false };
        match (level + 1..=wish).find(|l| self.stats.is_active(*l, now)) {
            Some(l) => {
                self.choice.cap = Some(l);
                true
            }
            None => false,
        }
    }
}

impl LegBudget {
    /// A REMB from the subscriber's browser.
    pub fn on_estimate(&mut self, bps: u64) {
        self.estimate = Some(bps);
        self.peak = self.peak.max(bps);
    }

    pub fn estimate(&self) -> Option<u64> {
        self.estimate
    }

    /// Moves the tracks' caps (and pauses) to what the estimate carries;
    /// `tracks` in priority order, highest first. Returns the indices of the
    /// tracks whose pause state changed.
    pub fn allocate(&mut self, tracks: &mut [Track], now: Instant) -> Vec<usize> {
        let Some(estimate) = self.estimate else { return Vec::new() };
        let before: Vec<bool> = tracks.iter().map(|t| t.choice.paused).collect();
        // A first estimate lets every track have all it wishes for until
        // the estimate says otherwise. The cap is what the bandwidth allows,
        // not what the tile wants: a tile that grows gets the better layer
        // at once if the cap allows it (and steps down if the link then
        // does not carry it).
        for t in tracks.iter_mut().filter(|t| t.adaptable() && t.choice.cap.is_none()) {
            t.choice.cap = Some((MAX_LAYERS - 1) as Layer);
        }
        // A layer that rose without a trial (a tile grew, a layer the tile
        // wants came back) is tested like one: the estimate gets time to grow.
        if tracks.iter().any(|t| t.adaptable() && t.level(now) > t.choice.allocated && t.choice.allocated.is_some()) {
            self.changed();
            self.lifted_at = Some(now);
        }
        let sent: u64 = tracks.iter().map(|t| t.rate(now)).sum();
        let ramping = self.lifted_at.is_some_and(|t| now.saturating_duration_since(t) < RAMP);
        let short = estimate * 100 < sent * KEEP_PERCENT;
        let fell = estimate * 100 < self.peak * FALL_PERCENT;
        let congested = short && (!ramping || fell);
        if congested {
            self.room_since = None;
            // A trial that failed is undone against a lower bar: right after
            // overuse a receiver's estimate undershoots what the link carries.
            let settling = self.lowered_at.is_some_and(|t| now.saturating_duration_since(t) < SETTLE);
            let keep = if ramping || settling { FAILED_TRIAL_KEEP_PERCENT } else { KEEP_PERCENT };
            if self.fit(tracks, estimate, keep, now) {
                self.changed();
                self.lowered_at = Some(now);
                if self.lifted_at.take().is_some_and(|t| now.saturating_duration_since(t) < PROBATION) {
                    self.failed_lifts = (self.failed_lifts + 1).min(MAX_FAILED_LIFTS);
                } else if fell {
                    // The link got worse (a first estimate, or one that
                    // held, says where the link is, not that it changed).
                    self.recover_until = Some(now + RECOVER);
                }
            }
        } else {
            self.starved_since = None;
            if estimate * 100 >= sent * ROOM_PERCENT {
                let since = *self.room_since.get_or_insert(now);
                let hold = UPGRADE_HOLD * (1 << self.failed_lifts);
                let recovered = self.recover_until.is_none_or(|t| now >= t);
                if recovered
                    && now.saturating_duration_since(since) >= hold
                    && tracks.iter_mut().filter(|t| t.adaptable()).any(|t| t.step_up(now))
                {
                    self.changed();
                    self.lifted_at = Some(now);
                }
            } else {
                self.room_since = None;
            }
        }
        for t in tracks.iter_mut() {
            t.choice.allocated = if t.choice.paused { None } else { t.level(now) };
        }
        if self.lifted_at.is_some_and(|t| now.saturating_duration_since(t) >= STABLE) {
            (self.failed_lifts, self.lifted_at) = (0, None);
        }
        tracks.iter().zip(before).enumerate().filter(|(_, (t, was))| t.choice.paused != *was).map(|(i, _)| i).collect()
    }

    /// Steps tracks down, lowest priority first, until `keep` percent of
    /// what they send fits `estimate`; pauses them (the same way) once even their lowest layers
    /// have not fitted for [`PAUSE_HOLD`]. Returns whether anything changed.
    fn fit(&mut self, tracks: &mut [Track], estimate: u64, keep: u64, now: Instant) -> bool {
        let fits = |tracks: &[Track]| tracks.iter().map(|t| t.rate(now)).sum::<u64>() * keep <= estimate * 100;
        let mut changed = false;
        for i in (0..tracks.len()).rev() {
            while !fits(tracks) && tracks[i].adaptable() && tracks[i].step_down(now) {
                changed = true;
            }
        }
        if fits(tracks) {
            self.starved_since = None;
            return changed;
        }
        let since = *self.starved_since.get_or_insert(now);
        if now.saturating_duration_since(since) < PAUSE_HOLD {
            return changed;
        }
        for i in (0..tracks.len()).rev() {
            if fits(tracks) {
                break;
            }
            let t = &mut tracks[i];
            if t.adaptable() && !t.choice.paused {
                t.choice.paused = true;
                // It starts again at a keyframe.
                t.choice.current = None;
                changed = true;
            }
        }
        changed
    }

    /// Layers changed: the estimate's peak and room start over.
    fn changed(&mut self) {
        self.peak = self.estimate.unwrap_or(0);
        self.room_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::layers::Pass;
    use super::*;

    /// Layers that have sent about 150, 500 and 1,500 kb/s (with headers)
    /// for the second up to `now`.
    fn flowing(now: Instant) -> LayerStats {
        let mut s = LayerStats::default();
        let t0 = now - Duration::from_millis(990);
        for i in 0..30u64 {
            for (l, r) in [150_000u64, 500_000, 1_500_000].iter().enumerate() {
                let size = (i == 0).then_some((320 << l, 180 << l));
                s.on_packet(l as Layer, (*r / 8 / 30) as usize - 42, size, t0 + Duration::from_millis(i * 33));
            }
        }
        s
    }

    /// One subscriber leg receiving one or two simulcast tracks, in time.
    struct Leg {
        budget: LegBudget,
        choices: Vec<LayerChoice>,
        now: Instant,
    }

    impl Leg {
        fn new(tracks: usize) -> Self {
            Leg { budget: LegBudget::default(), choices: vec![LayerChoice::default(); tracks], now: Instant::now() }
        }

        /// `d` later, a REMB of `estimate` and an allocation; returns whether a
        /// pause state changed.
        fn step(&mut self, estimate: u64, d: Duration) -> bool {
            self.now += d;
            let stats = flowing(self.now);
            self.budget.on_estimate(estimate);
            let mut tracks: Vec<Track> =
                self.choices.iter_mut().map(|choice| Track { stats: &stats, choice }).collect();
            !self.budget.allocate(&mut tracks, self.now).is_empty()
        }

        fn level(&mut self, i: usize) -> Option<Layer> {
            let stats = flowing(self.now);
            Track { stats: &stats, choice: &mut self.choices[i] }.level(self.now)
        }

        /// Holds `estimate` (one without room for more) for [`RECOVER`].
        fn recover(&mut self, estimate: u64) {
            let before = self.level(0);
            let seen = self.hold(estimate, RECOVER);
            assert!(seen.iter().all(|l| *l == before), "settled: {seen:?}");
        }

        /// Steps every 250 ms for `d` with `estimate`; the levels seen.
        fn hold(&mut self, estimate: u64, d: Duration) -> Vec<Option<Layer>> {
            (0..d.as_millis() / 250)
                .map(|_| {
                    self.step(estimate, TICK);
                    self.level(0)
                })
                .collect()
        }
    }

    const TICK: Duration = Duration::from_millis(250);

    #[test]
    fn without_an_estimate_nothing_is_limited() {
        let mut leg = Leg::new(1);
        let stats = flowing(leg.now);
        assert!(leg.budget.allocate(&mut [Track { stats: &stats, choice: &mut leg.choices[0] }], leg.now).is_empty());
        assert_eq!(leg.choices[0].cap, None);
        assert_eq!(leg.level(0), Some(2));
    }

    #[test]
    fn a_congested_estimate_steps_down_at_once_to_the_layer_that_fits() {
        let mut leg = Leg::new(1);
        leg.step(2_000_000, TICK);
        assert_eq!(leg.level(0), Some(2), "a first estimate with room keeps the top layer");
        // What a browser reports when a 600 kb/s link is overrun: ~85 % of it.
        leg.step(510_000, TICK);
        assert_eq!(leg.level(0), Some(1));
    }

    #[test]
    fn one_overrun_costs_one_step_while_the_estimate_settles() {
        let mut leg = Leg::new(1);
        leg.step(2_000_000, TICK);
        leg.step(1_100_000, TICK);
        assert_eq!(leg.level(0), Some(1), "the top layer does not fit");
        // The estimate goes on falling as the link's queue drains: the
        // middle layer stays while it is within the lower bar...
        let seen = leg.hold(400_000, SETTLE - TICK);
        assert!(seen.iter().all(|l| *l == Some(1)), "no second step while settling: {seen:?}");
        // ...and goes if the estimate stays there.
        let seen = leg.hold(400_000, TICK * 2);
        assert_eq!(seen.last(), Some(&Some(0)), "{seen:?}");
        // A fall below the lower bar steps down at once, settling or not.
        let mut leg = Leg::new(1);
        leg.step(2_000_000, TICK);
        leg.step(1_100_000, TICK);
        leg.step(300_000, TICK);
        assert_eq!(leg.level(0), Some(0));
    }

    #[test]
    fn room_in_the_estimate_lifts_one_layer_after_the_hold() {
        let mut leg = Leg::new(1);
        leg.step(200_000, TICK);
        assert_eq!(leg.level(0), Some(0));
        // 1.5x what the low layer sends: the most a receiver ever reports.
        let seen = leg.hold(235_000, UPGRADE_HOLD - TICK);
        assert!(seen.iter().all(|l| *l == Some(0)), "not before the hold: {seen:?}");
        let seen = leg.hold(235_000, TICK * 2);
        assert_eq!(seen.last(), Some(&Some(1)), "one layer up, not two: {seen:?}");
    }

    #[test]
    fn a_lift_that_falls_back_makes_the_next_wait_twice_as_long() {
        let mut leg = Leg::new(1);
        leg.step(600_000, TICK);
        assert_eq!(leg.level(0), Some(1));
        // Room for more (750 kb/s is about the most a 500 kb/s leg is told):
        // after 3 s the top layer is tried.
        let seen = leg.hold(750_000, UPGRADE_HOLD + TICK);
        assert_eq!(seen.last(), Some(&Some(2)), "tried after the hold: {seen:?}");
        // The estimate climbs at first, then falls: the top layer does not fit.
        leg.step(800_000, TICK);
        assert_eq!(leg.level(0), Some(2), "ramping");
        leg.step(640_000, TICK);
        assert_eq!(leg.level(0), Some(1), "fell back");
        // Room again: 3 s are not enough now, 6 s are.
        let seen = leg.hold(750_000, UPGRADE_HOLD * 2 - TICK);
        assert!(seen.iter().all(|l| *l == Some(1)), "held back longer: {seen:?}");
        let seen = leg.hold(750_000, TICK * 2);
        assert_eq!(seen.last(), Some(&Some(2)), "tried again after 6 s: {seen:?}");
    }

    #[test]
    fn after_the_link_gets_worse_the_first_trial_waits_for_it_to_recover() {
        let mut leg = Leg::new(1);
        leg.step(2_000_000, TICK);
        leg.recover(2_000_000);
        // The top layer fitted for long; the link falls to ~250 kb/s and
        // its receiver says 85 % of that, which looks like room above the
        // low layer (150 kb/s): no trial until the link had time to recover.
        let seen = leg.hold(212_000, RECOVER - TICK);
        assert!(seen.iter().all(|l| *l == Some(0)), "stepped down and stayed: {seen:?}");
        let seen = leg.hold(212_000, TICK * 2);
        assert_eq!(seen.last(), Some(&Some(1)), "then tried: {seen:?}");
    }

    #[test]
    fn a_trial_is_undone_at_the_first_fall_of_the_estimate_and_kept_while_it_holds() {
        let mut leg = Leg::new(1);
        leg.step(200_000, TICK);
        let seen = leg.hold(235_000, UPGRADE_HOLD + TICK);
        assert_eq!(seen.last(), Some(&Some(1)), "tried after the hold: {seen:?}");
        // The middle layer sends 500 kb/s: short, but a flat estimate is a
        // receiver that has seen no overuse yet.
        let seen = leg.hold(235_000, RAMP - TICK * 4);
        assert!(seen.iter().all(|l| *l == Some(1)), "kept while the estimate holds: {seen:?}");
        // What an overrun link's receiver says: 2 % less.
        leg.step(230_000, TICK);
        assert_eq!(leg.level(0), Some(0), "undone at the fall");
    }

    #[test]
    fn below_the_lowest_layer_video_pauses_after_a_while_and_resumes_by_trial() {
        let mut leg = Leg::new(1);
        leg.step(100_000, TICK);
        assert_eq!(leg.level(0), Some(0));
        assert!(!leg.choices[0].paused, "a dip does not pause at once");
        let changed = leg.hold(100_000, PAUSE_HOLD);
        assert!(leg.choices[0].paused, "paused after the hold: {changed:?}");
        assert_eq!(leg.choices[0].pass(0, true, true), Pass::Skip);
        // Nothing is sent, so the estimate says nothing new: after the hold
        // the low layer is tried again.
        leg.hold(100_000, UPGRADE_HOLD - TICK);
        assert!(leg.choices[0].paused, "not before the hold");
        assert!(leg.step(100_000, TICK * 2), "resumed by trial");
        assert!(!leg.choices[0].paused);
    }

    #[test]
    fn screen_shares_keep_their_layer_while_cameras_step_down() {
        let mut leg = Leg::new(2); // the first is the screen share (highest priority)
        leg.step(4_000_000, TICK);
        // Room for the screen's top layer and the camera's lowest only.
        leg.step(1_500_000, TICK);
        assert_eq!((leg.level(0), leg.level(1)), (Some(2), Some(0)));
    }

    #[test]
    fn a_tile_that_grows_gets_its_layer_at_once_and_time_for_the_estimate() {
        let mut leg = Leg::new(1);
        leg.choices[0].max_height = Some(180);
        leg.step(235_000, TICK);
        assert_eq!(leg.level(0), Some(0));
        // The tile grows: the middle layer at once, though the estimate (what
        // a receiver says while getting the low layer) is below its rate...
        leg.choices[0].max_height = Some(360);
        leg.step(235_000, TICK);
        assert_eq!(leg.level(0), Some(1));
        let seen = leg.hold(260_000, TICK * 4);
        assert!(seen.iter().all(|l| *l == Some(1)), "it stays while the estimate grows: {seen:?}");
        // ...and back down when the estimate then falls.
        leg.step(200_000, TICK);
        assert_eq!(leg.level(0), Some(0));
    }
}
