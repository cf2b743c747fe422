//! Gear anomaly: the reported gear is outside the band of speeds that gear can be driven at.
//!
//! Rule: with `nGear` >= 1, the speed lies outside `PLAUSIBLE_SPEED_KMH[gear]` for 2 consecutive
//! samples. Gear 0 (neutral/unknown in FastF1) is never flagged. Bands are wide on purpose (a
//! modern F1 eight-speed gearbox); they flag a gear that cannot be right, not a sub-optimal one.

use crate::anomalies::{Episode, Rule};
use crate::records::{Alert, AnomalyKind, EventTime, TelemetryRecord};

/// `[min, max]` km/h at which each gear (index 1..=8) is plausible.
pub const PLAUSIBLE_SPEED_KMH: [(f64, f64); 9] =
    [(0.0, 400.0), (0.0, 140.0), (40.0, 175.0), (70.0, 205.0), (95.0, 235.0), (120.0, 265.0), (145.0, 300.0), (170.0, 335.0), (195.0, 400.0)];

/// Whether `gear` is plausible at `speed` km/h (gear 0 always is).
pub fn gear_plausible(gear: u8, speed: f64) -> bool {
    match PLAUSIBLE_SPEED_KMH.get(gear as usize) {
        Some((min, max)) => gear == 0 || (speed >= *min && speed <= *max),
        None => false,
    }
}

pub struct GearRule {
    episode: Episode,
}

impl Default for GearRule {
    fn default() -> Self {
        GearRule { episode: Episode::new(2, 1_000) }
    }
}

impl Rule for GearRule {
    fn kind(&self) -> AnomalyKind {
        AnomalyKind::GearAnomaly
    }

    fn depends_since(&self) -> Option<EventTime> {
        self.episode.depends_since()
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn observe(&mut self, s: &TelemetryRecord) -> Option<Alert> {
        let holds = !gear_plausible(s.gear, s.speed);
        let start = self.episode.update(holds, s, None)?;
        let (min, max) = PLAUSIBLE_SPEED_KMH.get(s.gear as usize).copied().unwrap_or((0.0, 0.0));
        Some(Alert::new(
            self.kind(),
            &start,
            s,
            format!("gear {} at {:.0} km/h (plausible {min:.0}-{max:.0} km/h)", s.gear, s.speed),
            vec![("gear", f64::from(s.gear)), ("speed", s.speed), ("rpm", s.rpm)],
        ))
    }
}
