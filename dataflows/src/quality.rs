//! Data-quality flags: what real FastF1 exports contain that is neither an anomaly nor a bad
//! record. Flagged samples are processed like any other; the flags are only counted (by the
//! file reader when producing, and per record by the job as a Prometheus counter), so a team can
//! see how clean a session's data is.
//!
//! - `throttle_invalid`: Throttle above 100 (FastF1 writes 104 for "invalid"). Rules never read
//!   it as a pedal position and windows leave it out of the throttle statistics.
//! - `drs_unknown_code`: a DRS value outside the documented 0/1 (off), 8 (eligible), 10/12/14
//!   (open); FastF1 passes the timing feed's codes 0-14 through unchanged.
//! - `negative_distance`: Distance below zero (FastF1 integrates speed from the first sample,
//!   which can start slightly before the line).
//! - `distance_backward`: Distance lower than the driver's previous sample.
//! - `sampling_gap`: more than [`MAX_SAMPLE_GAP_MS`] between a driver's consecutive samples;
//!   rules start afresh after one rather than read the gap as a change.
//! - `duplicate_sample`: an exact copy of a sample already seen (a non-idempotent producer's
//!   resend); unlike the others it is dropped, not processed (`dedupe.rs`, counted by the job).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::anomalies::MAX_SAMPLE_GAP_MS;
use crate::records::{EventTime, SmolStr, TelemetryRecord};

/// DRS values FastF1 documents; others are counted as `drs_unknown_code`.
pub const DOCUMENTED_DRS: [u8; 6] = [0, 1, 8, 10, 12, 14];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityFlag {
    ThrottleInvalid,
    DrsUnknownCode,
    NegativeDistance,
    DistanceBackward,
    SamplingGap,
    DuplicateSample,
}

impl QualityFlag {
    pub const ALL: [QualityFlag; 6] = [
        QualityFlag::ThrottleInvalid,
        QualityFlag::DrsUnknownCode,
        QualityFlag::NegativeDistance,
        QualityFlag::DistanceBackward,
        QualityFlag::SamplingGap,
        QualityFlag::DuplicateSample,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QualityFlag::ThrottleInvalid => "throttle_invalid",
            QualityFlag::DrsUnknownCode => "drs_unknown_code",
            QualityFlag::NegativeDistance => "negative_distance",
            QualityFlag::DistanceBackward => "distance_backward",
            QualityFlag::SamplingGap => "sampling_gap",
            QualityFlag::DuplicateSample => "duplicate_sample",
        }
    }
}

/// The flags one sample raises on its own (no history needed).
pub fn sample_flags(record: &TelemetryRecord) -> impl Iterator<Item = QualityFlag> {
    [
        (record.throttle > 100.0, QualityFlag::ThrottleInvalid),
        (!DOCUMENTED_DRS.contains(&record.drs), QualityFlag::DrsUnknownCode),
        (record.distance < 0.0, QualityFlag::NegativeDistance),
    ]
    .into_iter()
    .filter_map(|(raised, flag)| raised.then_some(flag))
}

/// Counts every flag over samples given in each driver's time order.
#[derive(Clone, Debug, Default)]
pub struct QualityCounts {
    counts: BTreeMap<QualityFlag, u64>,
    last: HashMap<SmolStr, (EventTime, f64)>,
}

impl QualityCounts {
    pub fn observe(&mut self, record: &TelemetryRecord) {
        let mut raise = |flag| *self.counts.entry(flag).or_default() += 1;
        sample_flags(record).for_each(&mut raise);
        if let Some((time, distance)) = self.last.get(&record.driver) {
            if record.session_time_ms.saturating_sub(*time) > MAX_SAMPLE_GAP_MS {
                raise(QualityFlag::SamplingGap);
            }
            if record.distance < *distance {
                raise(QualityFlag::DistanceBackward);
            }
        }
        self.last.insert(record.driver.clone(), (record.session_time_ms, record.distance));
    }

    pub fn get(&self, flag: QualityFlag) -> u64 {
        self.counts.get(&flag).copied().unwrap_or(0)
    }

    /// `flag=count` for each raised flag, or "none".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.counts.iter().map(|(flag, n)| format!("{}={n}", flag.name())).collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: u64, throttle: f64, drs: u8, distance: f64) -> TelemetryRecord {
        TelemetryRecord { driver: "VER".into(), session_time_ms: time, throttle, drs, distance, ..TelemetryRecord::default() }
    }

    #[test]
    fn flags_sentinels_codes_gaps_and_backward_distance() {
        let mut counts = QualityCounts::default();
        for record in [at(0, 50.0, 0, -0.3), at(250, 104.0, 12, 10.0), at(500, 99.5, 9, 9.8), at(4_500, 100.0, 8, 600.0), at(4_750, 100.0, 2, 650.0)]
        {
            counts.observe(&record);
        }
        assert_eq!(counts.get(QualityFlag::ThrottleInvalid), 1);
        assert_eq!(counts.get(QualityFlag::DrsUnknownCode), 2);
        assert_eq!(counts.get(QualityFlag::NegativeDistance), 1);
        assert_eq!(counts.get(QualityFlag::DistanceBackward), 1);
        assert_eq!(counts.get(QualityFlag::SamplingGap), 1);
        assert_eq!(counts.summary(), "throttle_invalid=1, drs_unknown_code=2, negative_distance=1, distance_backward=1, sampling_gap=1");
        // Drivers are tracked apart: another driver's first sample is not a gap.
        counts.observe(&TelemetryRecord { driver: "HAM".into(), session_time_ms: 90_000, drs: 0, ..TelemetryRecord::default() });
        assert_eq!(counts.get(QualityFlag::SamplingGap), 1);
    }
}
