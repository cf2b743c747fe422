//! `WindowAccumulator`: the aggregate every window kind computes, fed samples in event-time order.

use crate::records::{ChannelStats, EventTime, TelemetryRecord, WindowKind, WindowResult};

#[derive(Clone, Copy, Debug)]
struct Channel {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Channel {
    fn default() -> Self {
        Channel { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }
}

impl Channel {
    fn push(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds the values another channel was pushed.
    fn merge(&mut self, other: &Channel) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Mean, min and max of the values pushed; all 0 when there were none.
    fn stats(&self) -> ChannelStats {
        if self.count == 0 {
            return ChannelStats { mean: 0.0, min: 0.0, max: 0.0 };
        }
        ChannelStats { mean: self.sum / self.count as f64, min: self.min, max: self.max }
    }
}

/// Count, mean/min/max of speed, RPM and throttle, % braking, gear changes and DRS-open time.
/// Throttle statistics leave out FastF1's invalid-throttle sentinel (values above 100).
#[derive(Clone, Debug, Default)]
pub struct WindowAccumulator {
    count: u64,
    speed: Channel,
    rpm: Channel,
    throttle: Channel,
    braking: u64,
    gear_changes: u64,
    drs_open_ms: u64,
    /// The last and first samples' (time, gear, DRS open): gear changes and DRS-open time span
    /// the seam when a later accumulator is merged in.
    previous: Option<(EventTime, u8, bool)>,
    first: Option<(EventTime, u8, bool)>,
}

impl WindowAccumulator {
    /// Adds the next sample (samples must come in event-time order).
    pub fn push(&mut self, record: &TelemetryRecord) {
        let time = record.session_time_ms;
        self.count += 1;
        self.speed.push(record.speed);
        self.rpm.push(record.rpm);
        if record.throttle <= crate::anomalies::brake_throttle::MAX_VALID_THROTTLE {
            self.throttle.push(record.throttle);
        }
        self.braking += u64::from(record.brake);
        if let Some((previous_time, previous_gear, previous_drs_open)) = self.previous {
            self.gear_changes += u64::from(previous_gear != record.gear);
            if previous_drs_open {
                self.drs_open_ms += time.saturating_sub(previous_time);
            }
        }
        self.previous = Some((time, record.gear, record.drs_open()));
        self.first.get_or_insert((time, record.gear, record.drs_open()));
    }

    /// Adds what `later` was pushed, as if its samples had been pushed here after this one's
    /// (they must all come later in event time). Sliding windows merge per-pane accumulators.
    pub fn merge(&mut self, later: &WindowAccumulator) {
        let (Some(seam), Some((later_first, later_gear, _))) = (self.previous, later.first) else {
            if self.first.is_none() {
                *self = later.clone();
            }
            return;
        };
        let (seam_time, seam_gear, seam_drs_open) = seam;
        self.count += later.count;
        self.speed.merge(&later.speed);
        self.rpm.merge(&later.rpm);
        self.throttle.merge(&later.throttle);
        self.braking += later.braking;
        self.gear_changes += later.gear_changes + u64::from(seam_gear != later_gear);
        self.drs_open_ms += later.drs_open_ms;
        if seam_drs_open {
            self.drs_open_ms += later_first.saturating_sub(seam_time);
        }
        self.previous = later.previous;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first and last sample times pushed.
    pub fn span(&self) -> Option<(EventTime, EventTime)> {
        Some((self.first?.0, self.previous?.0))
    }

    pub fn finish(&self, driver: &str, window: WindowKind, start_ms: EventTime, end_ms: EventTime) -> WindowResult {
        WindowResult {
            driver: driver.to_string(),
            window,
            start_ms,
            end_ms,
            count: self.count,
            speed: self.speed.stats(),
            rpm: self.rpm.stats(),
            throttle: self.throttle.stats(),
            brake_pct: 100.0 * self.braking as f64 / self.count as f64,
            gear_changes: self.gear_changes,
            drs_open_ms: self.drs_open_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Race, RaceConfig};

    fn aggregate(records: &[TelemetryRecord]) -> WindowAccumulator {
        let mut acc = WindowAccumulator::default();
        records.iter().for_each(|r| acc.push(r));
        acc
    }

    #[test]
    fn merging_split_aggregates_equals_aggregating_the_whole() {
        let rows = Race::generate(&RaceConfig { drivers: 1, laps: 1, seed: 7, inject_anomalies: true }).drivers.remove(0).1;
        let whole = aggregate(&rows).finish("VER", WindowKind::Sliding, 0, 1);
        // Seams where the gear changes and where DRS is open: the merge must count across them.
        let gear_seam = (1..rows.len()).find(|&i| rows[i - 1].gear != rows[i].gear).expect("a gear change");
        let drs_seam = (1..rows.len()).find(|&i| rows[i - 1].drs_open()).expect("DRS open somewhere");
        for splits in
            [vec![0], vec![rows.len()], vec![gear_seam], vec![drs_seam], vec![gear_seam.min(drs_seam), gear_seam.max(drs_seam)], vec![5, 5, 900]]
        {
            let mut bounds = vec![0];
            bounds.extend(splits.iter().map(|&s| s.min(rows.len())));
            bounds.push(rows.len());
            let mut merged = WindowAccumulator::default();
            for pair in bounds.windows(2) {
                merged.merge(&aggregate(&rows[pair[0]..pair[1]]));
            }
            assert_eq!(merged.span(), aggregate(&rows).span(), "splits {splits:?}");
            let got = merged.finish("VER", WindowKind::Sliding, 0, 1);
            assert_eq!((got.count, got.gear_changes, got.drs_open_ms), (whole.count, whole.gear_changes, whole.drs_open_ms), "splits {splits:?}");
            for (g, w) in [(got.speed, whole.speed), (got.rpm, whole.rpm), (got.throttle, whole.throttle)] {
                assert!((g.mean - w.mean).abs() <= 1e-9 * w.mean.abs().max(1.0) && g.min == w.min && g.max == w.max, "splits {splits:?}");
            }
            assert!((got.brake_pct - whole.brake_pct).abs() <= 1e-9, "splits {splits:?}");
        }
    }
}
