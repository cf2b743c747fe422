//! Sudden speed drop: speed falls faster than braking explains.
//!
//! Rule: within the last `window_ms` (1 s) of samples, some earlier sample is faster than the
//! current one by at least `drop_kmh` (60 km/h) with the brake off throughout, or by at least
//! `crash_drop_kmh` (100 km/h) while the gear stayed the same or dropped by one from an earlier,
//! plausible gear (a car that stops without changing down: a crash). Hard braking always changes down two or more gears per
//! 100 km/h. A sampling gap resets the history, so gaps alone never alert.

use std::collections::VecDeque;

use crate::anomalies::{gear_plausible, Episode, Rule, MAX_SAMPLE_GAP_MS};
use crate::records::{Alert, AnomalyKind, EventTime, TelemetryRecord};

#[derive(Clone, Debug, PartialEq)]
pub struct SpeedDropConfig {
    pub window_ms: u64,
    pub drop_kmh: f64,
    pub crash_drop_kmh: f64,
}

impl Default for SpeedDropConfig {
    fn default() -> Self {
        SpeedDropConfig { window_ms: 1_000, drop_kmh: 60.0, crash_drop_kmh: 100.0 }
    }
}

pub struct SpeedDropRule {
    config: SpeedDropConfig,
    /// The last `window_ms` of samples, as much of each as the rule reads: a whole record per
    /// sample would be a copy (and its driver string) per sample.
    history: VecDeque<Recent>,
    episode: Episode,
}

/// What the rule keeps of an earlier sample.
#[derive(Clone, Copy, Debug)]
struct Recent {
    time: EventTime,
    speed: f64,
    gear: u8,
    brake: bool,
    lap: Option<u32>,
}

impl Recent {
    fn of(s: &TelemetryRecord) -> Recent {
        Recent { time: s.session_time_ms, speed: s.speed, gear: s.gear, brake: s.brake, lap: s.lap }
    }

    /// The sample as the episode's start: the current record with this sample's time, lap and
    /// the values the alert reports (an alert reads its start's driver, time and lap).
    fn as_start(&self, now: &TelemetryRecord) -> TelemetryRecord {
        TelemetryRecord { session_time_ms: self.time, speed: self.speed, gear: self.gear, brake: self.brake, lap: self.lap, ..now.clone() }
    }
}

impl SpeedDropRule {
    pub fn new(config: SpeedDropConfig) -> SpeedDropRule {
        SpeedDropRule { config, history: VecDeque::new(), episode: Episode::new(1, 2_000) }
    }
}

impl Rule for SpeedDropRule {
    fn kind(&self) -> AnomalyKind {
        AnomalyKind::SuddenSpeedDrop
    }

    fn depends_since(&self) -> Option<EventTime> {
        self.history.front().map(|s| s.time).into_iter().chain(self.episode.depends_since()).min()
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.history.capacity() * std::mem::size_of::<Recent>()
    }

    fn observe(&mut self, s: &TelemetryRecord) -> Option<Alert> {
        let now = s.session_time_ms;
        if self.history.back().is_some_and(|last| now.saturating_sub(last.time) > MAX_SAMPLE_GAP_MS) {
            self.history.clear();
        }
        while self.history.front().is_some_and(|first| now.saturating_sub(first.time) > self.config.window_ms) {
            self.history.pop_front();
        }
        self.history.push_back(Recent::of(s));
        let c = &self.config;
        // Walk back from the newest sample, tracking whether the brake was on since then.
        let mut braked = s.brake;
        let mut culprit: Option<&Recent> = None;
        for earlier in self.history.iter().rev().skip(1) {
            braked |= earlier.brake;
            let drop = earlier.speed - s.speed;
            let unbraked = !braked && drop >= c.drop_kmh;
            let no_downshift =
                drop >= c.crash_drop_kmh && gear_plausible(earlier.gear, earlier.speed) && (s.gear == earlier.gear || s.gear + 1 == earlier.gear);
            if (unbraked || no_downshift) && culprit.is_none_or(|best| earlier.speed > best.speed) {
                culprit = Some(earlier);
            }
        }
        let culprit = culprit.map(|c| c.as_start(s));
        let start = self.episode.update(culprit.is_some(), s, culprit.as_ref())?;
        let from = culprit.as_ref().unwrap_or(&start);
        Some(Alert::new(
            self.kind(),
            &start,
            s,
            format!(
                "speed fell {:.0} -> {:.0} km/h in {} ms (brake {}, gear {} -> {})",
                from.speed,
                s.speed,
                now - from.session_time_ms,
                if braked { "on" } else { "off" },
                from.gear,
                s.gear
            ),
            vec![("from_speed", from.speed), ("to_speed", s.speed), ("ms", (now - from.session_time_ms) as f64), ("gear", f64::from(s.gear))],
        ))
    }
}
