//! Anomaly rules: each file holds one rule (a small state machine over one driver's samples in
//! event-time order) and documents it. [`AnomalyDetector`] runs a set of rules per driver inside
//! one `run_per_driver` operator, so each driver's state is looked up once per sample for
//! all rules.

pub mod brake_throttle;
pub mod episode;
pub mod gear;
pub mod over_rev;
pub mod speed_drop;
pub mod wheel_spin;

use std::rc::Rc;

use crate::keyed::KeyedLogic;
use crate::records::{Alert, AnomalyKind, EventTime, Sample, TelemetryRecord};

pub use brake_throttle::BrakeThrottleRule;
pub use episode::Episode;
pub use gear::{gear_plausible, GearRule, PLAUSIBLE_SPEED_KMH};
pub use over_rev::OverRevRule;
pub use speed_drop::SpeedDropRule;
pub use wheel_spin::WheelSpinRule;

/// Two samples further apart than this (event time) are a sampling gap: rules that compare
/// consecutive samples start afresh rather than read the gap as a change.
pub const MAX_SAMPLE_GAP_MS: u64 = 1_500;

/// One anomaly rule for one driver. Returns an alert when a condition starts, once per condition.
pub trait Rule {
    fn kind(&self) -> AnomalyKind;
    fn observe(&mut self, sample: &TelemetryRecord) -> Option<Alert>;
    /// Approximate bytes this rule holds for its driver.
    fn approx_bytes(&self) -> usize;
    /// The oldest event time whose sample the rule's state depends on (`None`: fresh state).
    /// The detector holds its capability there, so offsets are committed only up to it and a
    /// restart re-reads enough to rebuild the rule exactly.
    fn depends_since(&self) -> Option<EventTime>;
}

/// Thresholds of every rule; `Default` is what the README documents.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyConfig {
    pub wheel_spin: wheel_spin::WheelSpinConfig,
    pub over_rev_rpm: f64,
    pub overlap_min_throttle: f64,
    pub speed_drop: speed_drop::SpeedDropConfig,
    /// Which rules run.
    pub enabled: Vec<AnomalyKind>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            wheel_spin: Default::default(),
            over_rev_rpm: over_rev::DEFAULT_OVER_REV_RPM,
            overlap_min_throttle: brake_throttle::DEFAULT_MIN_THROTTLE,
            speed_drop: Default::default(),
            enabled: AnomalyKind::ALL.to_vec(),
        }
    }
}

impl AnomalyConfig {
    fn rules(&self) -> Vec<Box<dyn Rule>> {
        self.enabled
            .iter()
            .map(|kind| -> Box<dyn Rule> {
                match kind {
                    AnomalyKind::WheelSpin => Box::new(WheelSpinRule::new(self.wheel_spin.clone())),
                    AnomalyKind::GearAnomaly => Box::new(GearRule::default()),
                    AnomalyKind::OverRev => Box::new(OverRevRule::new(self.over_rev_rpm)),
                    AnomalyKind::BrakeThrottleOverlap => Box::new(BrakeThrottleRule::new(self.overlap_min_throttle)),
                    AnomalyKind::SuddenSpeedDrop => Box::new(SpeedDropRule::new(self.speed_drop.clone())),
                }
            })
            .collect()
    }
}

/// Runs the configured rules for every driver (a [`KeyedLogic`]).
#[derive(Clone, Debug, Default)]
pub struct AnomalyDetector {
    pub config: AnomalyConfig,
}

/// What [`AnomalyDetector`] emits: alerts, and the drivers whose rules' hold is released.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleEvent {
    Alert(Alert),
    Held(DriverHold),
}

/// A driver whose rules still depend on samples since `since` (a condition that has lasted
/// longer than `KeyedOptions::release_holds_after_ms`), announced once the detector stops
/// holding its capability there; `since: None` announces that it no longer does. Whoever commits
/// offsets keeps the driver's replay starting before `since` (`connectors/src/kafka/source/commit.rs`),
/// so a restart rebuilds the condition exactly while every other record commits on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriverHold {
    pub driver: String,
    pub since: Option<EventTime>,
}

/// The rule instances of one driver.
#[derive(Default)]
pub struct DriverRules {
    rules: Option<Vec<Box<dyn Rule>>>,
    /// Event time of the newest sample the rules have seen.
    newest: Option<EventTime>,
    /// Samples older than `newest` when they arrived: skipped by the rules (their windows still
    /// count them).
    pub out_of_order: u64,
}

impl KeyedLogic for AnomalyDetector {
    type State = DriverRules;
    type Out = RuleEvent;

    /// Rules see each driver's samples as they arrive (`in_log_order`); one older than the
    /// newest already seen cannot be replayed into the rules' past and is skipped.
    fn on_sample(&self, state: &mut DriverRules, sample: &Rc<Sample>, out: &mut Vec<(EventTime, RuleEvent)>) {
        let time = sample.record.session_time_ms;
        if state.newest.is_some_and(|newest| time < newest) {
            state.out_of_order += 1;
            return;
        }
        state.newest = Some(time);
        let rules = state.rules.get_or_insert_with(|| self.config.rules());
        for rule in rules.iter_mut() {
            if let Some(alert) = rule.observe(&sample.record) {
                out.push((sample.record.session_time_ms, RuleEvent::Alert(alert)));
            }
        }
    }

    /// The oldest sample any rule still depends on: commits stop there, so a restart rebuilds
    /// the rules' state (and re-raises, with the same ids, alerts whose condition it replays).
    fn hold(&self, state: &DriverRules) -> Option<EventTime> {
        state.rules.iter().flatten().filter_map(|rule| rule.depends_since()).min()
    }

    fn approx_bytes(&self, state: &DriverRules) -> usize {
        std::mem::size_of::<DriverRules>() + state.rules.iter().flatten().map(|rule| rule.approx_bytes()).sum::<usize>()
    }

    /// Alerts are stamped at their detecting sample, never at a hold: a hold only says where a
    /// replay must start, so a long one can be announced instead of held.
    fn released(&self, driver: &str, since: Option<EventTime>) -> Option<RuleEvent> {
        Some(RuleEvent::Held(DriverHold { driver: driver.to_string(), since }))
    }
}

/// Runs the rules over one driver's samples (already in time order), outside timely: the
/// reference the dataflow is tested against, and handy for scripts.
pub fn detect_in_order<'a>(config: &AnomalyConfig, samples: impl IntoIterator<Item = &'a TelemetryRecord>) -> Vec<Alert> {
    let mut rules = config.rules();
    samples.into_iter().flat_map(|s| rules.iter_mut().filter_map(|r| r.observe(s)).collect::<Vec<_>>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SourcePosition;
    use crate::sim::{Race, RaceConfig};

    /// Runs the detector's keyed logic over `records` in the given order.
    fn run(records: &[TelemetryRecord]) -> (Vec<String>, u64) {
        let detector = AnomalyDetector::default();
        let mut state = DriverRules::default();
        let mut out = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let sample = Rc::new(Sample { at: SourcePosition { partition: 0, offset: i as i64 }, record: record.clone() });
            detector.on_sample(&mut state, &sample, &mut out);
        }
        (out.into_iter().filter_map(|(_, event)| if let RuleEvent::Alert(a) = event { Some(a.id) } else { None }).collect(), state.out_of_order)
    }

    /// What a restart does: a fresh detector fed from the oldest sample the old one still
    /// depended on. From the crash point on it must raise exactly what the uninterrupted one
    /// raised; before it, only alerts the uninterrupted one had raised too (duplicates).
    #[test]
    fn replaying_from_the_hold_rebuilds_the_rules_exactly() {
        let race = Race::generate(&RaceConfig { drivers: 3, laps: 2, seed: 8, inject_anomalies: true });
        let detector = AnomalyDetector::default();
        let mut checked = 0;
        for (_, rows) in &race.drivers {
            let full = detect_in_order(&detector.config, rows);
            let ids: std::collections::BTreeSet<&str> = full.iter().map(|a| a.id.as_str()).collect();
            // Crash points every 29 samples, so they land inside episodes and windows alike.
            for crash in (1..rows.len()).step_by(29) {
                let mut state = DriverRules::default();
                let mut out = Vec::new();
                for (i, record) in rows[..crash].iter().enumerate() {
                    let sample = Rc::new(Sample { at: SourcePosition { partition: 0, offset: i as i64 }, record: record.clone() });
                    detector.on_sample(&mut state, &sample, &mut out);
                }
                let resume = detector.hold(&state).map_or(crash, |h| rows.iter().position(|r| r.session_time_ms >= h).unwrap());
                assert!(resume <= crash);
                let crash_time = rows[crash].session_time_ms;
                let replayed = detect_in_order(&detector.config, &rows[resume..]);
                let after: Vec<&Alert> = replayed.iter().filter(|a| a.detected_at_ms >= crash_time).collect();
                let expected: Vec<&Alert> = full.iter().filter(|a| a.detected_at_ms >= crash_time).collect();
                assert_eq!(after, expected, "crash at sample {crash}, resumed at {resume}");
                assert!(replayed.iter().all(|a| ids.contains(a.id.as_str())), "no alert the uninterrupted run did not raise");
                checked += 1;
            }
        }
        assert!(checked > 50);
    }

    #[test]
    fn samples_older_than_the_newest_are_skipped_and_counted_not_replayed() {
        let race = Race::generate(&RaceConfig { drivers: 1, laps: 2, seed: 3, inject_anomalies: true });
        let rows = &race.drivers[0].1;
        let expected: Vec<String> = detect_in_order(&AnomalyConfig::default(), rows).into_iter().map(|a| a.id).collect();
        assert!(!expected.is_empty());
        let (in_order, skipped) = run(rows);
        assert_eq!((in_order, skipped), (expected.clone(), 0));
        // Three stale copies of early samples arrive late in the log: same alerts, three skipped.
        let mut shuffled = rows.clone();
        for i in [10, 20, 30] {
            shuffled.insert(rows.len() / 2, rows[i].clone());
        }
        assert_eq!(run(&shuffled), (expected, 3));
    }
}
