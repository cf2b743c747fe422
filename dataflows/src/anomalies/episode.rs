//! `Episode`: turns a per-sample condition into one alert per ongoing condition.
//!
//! A condition must hold for `confirm` consecutive samples to raise an alert, which is then not
//! raised again until the condition has been false for `quiet_ms` of event time.

use crate::records::{EventTime, TelemetryRecord};

#[derive(Clone, Debug)]
pub struct Episode {
    confirm: u32,
    quiet_ms: u64,
    run: u32,
    start: Option<TelemetryRecord>,
    active: bool,
    last_true_ms: EventTime,
    /// Event time of the first sample of the current run or active condition: the state depends
    /// on no earlier sample.
    since: Option<EventTime>,
}

impl Episode {
    pub fn new(confirm: u32, quiet_ms: u64) -> Episode {
        Episode { confirm: confirm.max(1), quiet_ms, run: 0, start: None, active: false, last_true_ms: 0, since: None }
    }

    /// Feeds one sample's verdict. Returns the first sample of the condition when it is newly
    /// confirmed; `start_hint` overrides which sample counts as its start.
    pub fn update(&mut self, holds: bool, sample: &TelemetryRecord, start_hint: Option<&TelemetryRecord>) -> Option<TelemetryRecord> {
        let now = sample.session_time_ms;
        if holds {
            if self.run == 0 {
                let start = start_hint.unwrap_or(sample);
                if !self.active {
                    self.since = Some(start.session_time_ms);
                }
                self.start = Some(start.clone());
            }
            self.run += 1;
            self.last_true_ms = now;
            if !self.active && self.run >= self.confirm {
                self.active = true;
                return self.start.take();
            }
        } else {
            self.run = 0;
            if self.active && now.saturating_sub(self.last_true_ms) >= self.quiet_ms {
                self.active = false;
            }
            if !self.active {
                self.since = None;
            }
        }
        None
    }

    pub fn active(&self) -> bool {
        self.active
    }

    /// The oldest event time whose sample this episode's state depends on (`None`: it is
    /// fresh). Replaying from there rebuilds the state exactly, so a restarted rule raises the
    /// same alert (same id) or stays quiet, as the uninterrupted one did.
    pub fn depends_since(&self) -> Option<EventTime> {
        self.since
    }
}
