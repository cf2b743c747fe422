//! Wheel spin: RPM rising much faster than speed under throttle.
//!
//! In one gear, RPM is proportional to wheel speed, so `rpm / speed` is constant while the
//! tyres grip. The rule keeps, per gear, the lowest ratio of the last `baseline_ms` (1 s) of
//! samples; it flags a sample whose ratio exceeds that baseline by `ratio_rise` (8%) with
//! throttle >= 50%, speed >= 40 km/h and a gear plausible for the speed (an implausible gear is
//! a gear anomaly, not spin). Two consecutive samples confirm. A gear change or a sampling gap
//! resets the baseline.

use std::collections::VecDeque;

use crate::anomalies::{gear_plausible, Episode, Rule, MAX_SAMPLE_GAP_MS};
use crate::records::{Alert, AnomalyKind, EventTime, TelemetryRecord};

#[derive(Clone, Debug, PartialEq)]
pub struct WheelSpinConfig {
    pub ratio_rise: f64,
    pub min_throttle: f64,
    pub min_speed_kmh: f64,
    pub baseline_ms: u64,
}

impl Default for WheelSpinConfig {
    fn default() -> Self {
        WheelSpinConfig { ratio_rise: 0.08, min_throttle: 50.0, min_speed_kmh: 40.0, baseline_ms: 1_000 }
    }
}

pub struct WheelSpinRule {
    config: WheelSpinConfig,
    /// Recent grip samples in the current gear: (time, rpm/speed).
    baseline: VecDeque<(EventTime, f64)>,
    last: Option<(EventTime, u8)>,
    episode: Episode,
}

impl WheelSpinRule {
    pub fn new(config: WheelSpinConfig) -> WheelSpinRule {
        WheelSpinRule { config, baseline: VecDeque::new(), last: None, episode: Episode::new(2, 500) }
    }
}

impl Rule for WheelSpinRule {
    fn kind(&self) -> AnomalyKind {
        AnomalyKind::WheelSpin
    }

    fn depends_since(&self) -> Option<EventTime> {
        self.baseline.front().map(|(time, _)| *time).into_iter().chain(self.episode.depends_since()).min()
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.baseline.capacity() * std::mem::size_of::<(EventTime, f64)>()
    }

    fn observe(&mut self, s: &TelemetryRecord) -> Option<Alert> {
        let now = s.session_time_ms;
        if self.last.is_some_and(|(time, gear)| gear != s.gear || now.saturating_sub(time) > MAX_SAMPLE_GAP_MS) {
            self.baseline.clear();
        }
        self.last = Some((now, s.gear));
        while self.baseline.front().is_some_and(|(time, _)| now.saturating_sub(*time) > self.config.baseline_ms) {
            self.baseline.pop_front();
        }
        let c = &self.config;
        let eligible =
            s.speed >= c.min_speed_kmh && s.throttle >= c.min_throttle && s.throttle <= 100.0 && s.gear > 0 && gear_plausible(s.gear, s.speed);
        let ratio = s.rpm / s.speed.max(1.0);
        let base = self.baseline.iter().map(|(_, r)| *r).reduce(f64::min);
        let holds = eligible && base.is_some_and(|b| ratio > b * (1.0 + c.ratio_rise));
        if eligible && !holds {
            self.baseline.push_back((now, ratio));
        }
        let start = self.episode.update(holds, s, None)?;
        let base = base.unwrap_or(ratio);
        Some(Alert::new(
            self.kind(),
            &start,
            s,
            format!("RPM {:.0} at {:.0} km/h in gear {}: {:.0}% above grip", s.rpm, s.speed, s.gear, 100.0 * (ratio / base - 1.0)),
            vec![("rpm", s.rpm), ("speed", s.speed), ("ratio_over_grip", ratio / base), ("throttle", s.throttle), ("gear", f64::from(s.gear))],
        ))
    }
}
