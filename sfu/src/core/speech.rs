//! Who is speaking: a smoothed speaking state per published microphone,
//! from the RFC 6464 audio level (dBov) the publisher puts on each packet.
//!
//! Levels are gathered over a window of [`SPEECH_INTERVAL`]; a track speaks
//! when enough of the window's packets were louder than [`ACTIVE_DBOV`]
//! (LiveKit uses −35 dBov and 40 %; a lower share keeps a speaker who
//! pauses between words). The share to start is higher than the share to
//! keep speaking, so one loud packet or one breath does not flip the state.
//! Silence suppression (DTX) sends no packets: an empty window is silence.

use std::time::Duration;

/// Each track's state is decided, and a room's speakers reported at most,
/// once per this interval.
pub const SPEECH_INTERVAL: Duration = Duration::from_millis(300);

/// Packets at least this loud (in −dBov: 0 is full scale, 127 silence) count
/// as voice.
const ACTIVE_DBOV: u8 = 35;

/// Percent of a window's packets that must be voice to start speaking, and
/// to go on speaking.
const START_PERCENT: u32 = 40;
const KEEP_PERCENT: u32 = 20;

#[derive(Debug, Default, Clone)]
pub struct SpeechMeter {
    packets: u32,
    voiced: u32,
    /// Sum of the window's linear amplitudes (full scale = 1.0).
    amplitude: f32,
    /// Amplitude smoothed over windows while speaking; 0 when not.
    smoothed: f32,
}

impl SpeechMeter {
    /// One packet's audio level as str0m reports it (−127..=0 dBov).
    pub fn observe(&mut self, level: i8) {
        let dbov = level.unsigned_abs().min(127);
        self.packets += 1;
        if dbov <= ACTIVE_DBOV {
            self.voiced += 1;
        }
        self.amplitude += amplitude(dbov);
    }

    /// Closes the window: the speaking level (1..=100, a percent of full
    /// scale amplitude, smoothed) while the track speaks, `None` when not.
    pub fn evaluate(&mut self) -> Option<u8> {
        let share = (self.voiced * 100).checked_div(self.packets).unwrap_or(0);
        let needed = if self.smoothed > 0.0 { KEEP_PERCENT } else { START_PERCENT };
        let mean = if self.packets > 0 { self.amplitude / self.packets as f32 } else { 0.0 };
        (self.packets, self.voiced, self.amplitude) = (0, 0, 0.0);
        if share < needed {
            self.smoothed = 0.0;
            return None;
        }
        self.smoothed = if self.smoothed > 0.0 { (self.smoothed + mean) / 2.0 } else { mean };
        Some(((self.smoothed * 100.0).ceil() as u8).clamp(1, 100))
    }
}

fn amplitude(dbov: u8) -> f32 {
    10f32.powf(-f32::from(dbov) / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(m: &mut SpeechMeter, levels: &[i8]) -> Option<u8> {
        for l in levels {
            m.observe(*l);
        }
        m.evaluate()
    }

    #[test]
    fn voice_in_most_packets_speaks_and_silence_stops_it() {
        let mut m = SpeechMeter::default();
        assert!(window(&mut m, &[-20; 15]).is_some());
        assert_eq!(window(&mut m, &[-127; 15]), None);
        assert_eq!(window(&mut m, &[]), None, "no packets (DTX) is silence");
    }

    #[test]
    fn a_short_burst_does_not_start_speech_but_a_pause_keeps_it() {
        let mut m = SpeechMeter::default();
        let burst = [-10, -10, -10, -127, -127, -127, -127, -127, -127, -127, -127, -127, -127, -127, -127];
        assert_eq!(window(&mut m, &burst), None, "20 % voiced does not start");
        assert!(window(&mut m, &[-20; 15]).is_some());
        assert!(window(&mut m, &burst).is_some(), "20 % voiced keeps a speaker");
    }

    #[test]
    fn louder_voice_reports_a_higher_level() {
        let (mut loud, mut soft) = (SpeechMeter::default(), SpeechMeter::default());
        let l = window(&mut loud, &[-6; 15]).unwrap();
        let s = window(&mut soft, &[-30; 15]).unwrap();
        assert!(l > s, "{l} > {s}");
        assert_eq!(window(&mut SpeechMeter::default(), &[0; 15]), Some(100));
    }

    #[test]
    fn quiet_packets_are_not_voice() {
        let mut m = SpeechMeter::default();
        assert_eq!(window(&mut m, &[-50; 15]), None);
    }
}
