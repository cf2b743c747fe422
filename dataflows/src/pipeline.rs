//! The telemetry dataflow as one function: samples in, window results and alerts out. The
//! binary wires a Kafka source before it and Kafka sinks after it; tests feed it from memory.

use std::cell::Cell;
use std::rc::Rc;

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concat;
use timely::dataflow::Stream;

use crate::anomalies::{AnomalyConfig, AnomalyDetector, DriverHold, RuleEvent};
use crate::dedupe::drop_duplicate_samples;
use crate::keyed::{by_driver, in_log_order, in_time_order, run_per_driver, KeyedOptions, StateGauge};
use crate::records::{Alert, EventTime, Sample, WindowResult};
use crate::windows::{LapSegments, SlidingWindows};

/// What the telemetry dataflow computes.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    pub sliding: SlidingWindows,
    pub anomalies: AnomalyConfig,
    /// Key TTL and output time granularity of the keyed operators.
    pub keyed: KeyedOptions,
    /// Run the rules in event-time order once the watermark has passed each sample, instead of
    /// on arrival in each driver's partition order. Exact whatever the input partitioning, but
    /// every alert waits for the allowed lateness (and the slowest partition).
    pub alerts_after_watermark: bool,
    /// How far back (ms of event time) a driver's samples are remembered to drop exact
    /// duplicates (`dedupe.rs`): the source's allowed lateness, past which a copy is late anyway.
    pub duplicate_horizon_ms: u64,
    /// A driver's rule hold older than this behind the frontier (a condition lasting minutes)
    /// stops holding the detector, and with it every probe and commit: it is announced on
    /// `rule_holds` instead, for the source to keep that driver's replay point. `None` holds
    /// every hold (for dataflows whose commits do not read `rule_holds`).
    pub release_rule_holds_after_ms: Option<u64>,
}

/// The default [`TelemetryConfig::duplicate_horizon_ms`]: the source's default allowed lateness.
pub const DEFAULT_DUPLICATE_HORIZON_MS: u64 = 500;

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            sliding: SlidingWindows::default(),
            anomalies: AnomalyConfig::default(),
            keyed: KeyedOptions::default(),
            alerts_after_watermark: false,
            duplicate_horizon_ms: DEFAULT_DUPLICATE_HORIZON_MS,
            release_rule_holds_after_ms: None,
        }
    }
}

/// The two output streams of the telemetry dataflow.
pub struct TelemetryOutputs<'s> {
    pub windows: Stream<'s, EventTime, Vec<WindowResult>>,
    /// The sliding windows alone (also in `windows`): their frontier moves with every closed
    /// window, where lap windows hold theirs until a lap ends.
    pub sliding: Stream<'s, EventTime, Vec<WindowResult>>,
    pub alerts: Stream<'s, EventTime, Vec<Alert>>,
    /// Drivers whose rules' hold the detector released (see
    /// [`TelemetryConfig::release_rule_holds_after_ms`]); empty unless that is set.
    pub rule_holds: Stream<'s, EventTime, Vec<DriverHold>>,
    /// Per keyed operator, a gauge of the state it holds on this worker.
    pub state: Vec<(&'static str, StateGauge)>,
    /// The samples waiting for the watermark in `in_time_order` (also in `state`).
    pub ordering: StateGauge,
    /// Exact duplicate samples dropped on this worker (`dedupe.rs`).
    pub duplicates: Rc<Cell<u64>>,
}

/// Sliding, lap and sector windows per driver in event-time order, and anomaly detection per
/// driver as samples arrive.
pub fn telemetry_dataflow<'s>(samples: Stream<'s, EventTime, Vec<Sample>>, config: &TelemetryConfig) -> TelemetryOutputs<'s> {
    let (by_driver, duplicates) = drop_duplicate_samples(by_driver(samples), config.duplicate_horizon_ms);
    // Windows need every sample of their span, so they wait for the watermark; rules alert on
    // each sample as it arrives (a driver's partition order), so alerts do not wait for it.
    let (samples, order_state) = in_time_order(&by_driver);
    let arrivals = if config.alerts_after_watermark { samples.clone() } else { in_log_order(&by_driver) };
    let keyed = config.keyed;
    let (sliding, sliding_state) = run_per_driver(&samples, "SlidingWindows", config.sliding, keyed);
    let (laps, lap_state) = run_per_driver(&samples, "LapWindows", LapSegments::Lap, keyed);
    let (sectors, sector_state) = run_per_driver(&samples, "SectorWindows", LapSegments::Sector, keyed);
    let detector = AnomalyDetector { config: config.anomalies.clone() };
    let rules = KeyedOptions { release_holds_after_ms: config.release_rule_holds_after_ms, ..keyed };
    let (events, rule_state) = run_per_driver(&arrivals, "AnomalyDetector", detector, rules);
    let alerts = events.clone().flat_map(|event| if let RuleEvent::Alert(alert) = event { Some(alert) } else { None });
    let rule_holds = events.flat_map(|event| if let RuleEvent::Held(hold) = event { Some(hold) } else { None });
    TelemetryOutputs {
        windows: sliding.clone().concat(laps).concat(sectors),
        sliding,
        alerts,
        rule_holds,
        ordering: order_state.clone(),
        duplicates,
        state: vec![
            ("in_time_order", order_state),
            ("sliding_windows", sliding_state),
            ("lap_windows", lap_state),
            ("sector_windows", sector_state),
            ("anomaly_rules", rule_state),
        ],
    }
}
