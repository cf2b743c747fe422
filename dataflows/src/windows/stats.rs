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
    previous: Option<(EventTime, u8, bool)>,
    first: Option<EventTime>,
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
        self.first.get_or_insert(time);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first and last sample times pushed.
    pub fn span(&self) -> Option<(EventTime, EventTime)> {
        Some((self.first?, self.previous?.0))
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
