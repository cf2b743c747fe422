//! Brake+throttle overlap: the brake is on while the throttle is at least 20% (configurable) for
//! 2 consecutive samples. FastF1's throttle value 104 ("invalid") never counts as pressed.

use crate::anomalies::{Episode, Rule};
use crate::records::{Alert, AnomalyKind, EventTime, TelemetryRecord};

pub const DEFAULT_MIN_THROTTLE: f64 = 20.0;
/// Throttle values above this are FastF1's invalid-data sentinel, not a pedal position.
pub const MAX_VALID_THROTTLE: f64 = 100.0;

pub struct BrakeThrottleRule {
    min_throttle: f64,
    episode: Episode,
}

impl BrakeThrottleRule {
    pub fn new(min_throttle: f64) -> BrakeThrottleRule {
        BrakeThrottleRule { min_throttle, episode: Episode::new(2, 1_000) }
    }
}

impl Rule for BrakeThrottleRule {
    fn kind(&self) -> AnomalyKind {
        AnomalyKind::BrakeThrottleOverlap
    }

    fn depends_since(&self) -> Option<EventTime> {
        self.episode.depends_since()
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn observe(&mut self, s: &TelemetryRecord) -> Option<Alert> {
        let holds = s.brake && s.throttle >= self.min_throttle && s.throttle <= MAX_VALID_THROTTLE;
        let start = self.episode.update(holds, s, None)?;
        Some(Alert::new(
            self.kind(),
            &start,
            s,
            format!("brake on with {:.0}% throttle at {:.0} km/h", s.throttle, s.speed),
            vec![("throttle", s.throttle), ("speed", s.speed)],
        ))
    }
}
