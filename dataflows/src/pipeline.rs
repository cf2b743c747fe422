//! The telemetry dataflow as one function: samples in, window results and alerts out. The
//! binary wires a Kafka source before it and Kafka sinks after it; tests feed it from memory.

use timely::dataflow::operators::Concat;
use timely::dataflow::Stream;

use crate::anomalies::{AnomalyConfig, AnomalyDetector};
use crate::keyed::{by_driver, in_time_order, keyed_in_time_order, StateGauge};
use crate::records::{Alert, EventTime, Sample, WindowResult};
use crate::windows::{LapSegments, SlidingWindows};

/// What the telemetry dataflow computes.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    pub sliding: SlidingWindows,
    pub anomalies: AnomalyConfig,
    /// Drop a driver's state once it has been silent this long in event time (after emitting
    /// what it holds); `None` keeps it until the input ends.
    pub key_ttl_ms: Option<u64>,
}

/// The two output streams of the telemetry dataflow.
pub struct TelemetryOutputs<'s> {
    pub windows: Stream<'s, EventTime, Vec<WindowResult>>,
    pub alerts: Stream<'s, EventTime, Vec<Alert>>,
    /// Per keyed operator, a gauge of the state it holds on this worker.
    pub state: Vec<(&'static str, StateGauge)>,
}

/// Sliding, lap and sector windows plus anomaly detection, all per driver in event-time order.
pub fn telemetry_dataflow<'s>(samples: Stream<'s, EventTime, Vec<Sample>>, config: &TelemetryConfig) -> TelemetryOutputs<'s> {
    let (samples, order_state) = in_time_order(&by_driver(samples));
    let ttl = config.key_ttl_ms;
    let (sliding, sliding_state) = keyed_in_time_order(&samples, "SlidingWindows", config.sliding, ttl);
    let (laps, lap_state) = keyed_in_time_order(&samples, "LapWindows", LapSegments::Lap, ttl);
    let (sectors, sector_state) = keyed_in_time_order(&samples, "SectorWindows", LapSegments::Sector, ttl);
    let (alerts, rule_state) = keyed_in_time_order(&samples, "AnomalyDetector", AnomalyDetector { config: config.anomalies.clone() }, ttl);
    TelemetryOutputs {
        windows: sliding.concat(laps).concat(sectors),
        alerts,
        state: vec![
            ("in_time_order", order_state),
            ("sliding_windows", sliding_state),
            ("lap_windows", lap_state),
            ("sector_windows", sector_state),
            ("anomaly_rules", rule_state),
        ],
    }
}
