//! Over-rev: engine speed at or above the limit (default 12,500 RPM) for 2 consecutive samples,
//! typically a missed upshift. One sample alone is treated as a sensor glitch.

use crate::anomalies::{Episode, Rule};
use crate::records::{Alert, AnomalyKind, EventTime, TelemetryRecord};

pub const DEFAULT_OVER_REV_RPM: f64 = 12_500.0;

pub struct OverRevRule {
    limit_rpm: f64,
    episode: Episode,
}

impl OverRevRule {
    pub fn new(limit_rpm: f64) -> OverRevRule {
        OverRevRule { limit_rpm, episode: Episode::new(2, 1_000) }
    }
}

impl Rule for OverRevRule {
    fn kind(&self) -> AnomalyKind {
        AnomalyKind::OverRev
    }

    fn depends_since(&self) -> Option<EventTime> {
        self.episode.depends_since()
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn observe(&mut self, s: &TelemetryRecord) -> Option<Alert> {
        let start = self.episode.update(s.rpm >= self.limit_rpm, s, None)?;
        Some(Alert::new(
            self.kind(),
            &start,
            s,
            format!("{:.0} RPM in gear {} (limit {:.0})", s.rpm, s.gear, self.limit_rpm),
            vec![("rpm", s.rpm), ("limit_rpm", self.limit_rpm), ("gear", f64::from(s.gear)), ("speed", s.speed)],
        ))
    }
}
