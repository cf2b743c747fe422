//! The telemetry dataflow as one function: samples in, window results and alerts out. The
//! binary wires a Kafka source before it and Kafka sinks after it; tests feed it from memory.

use timely::dataflow::operators::Concat;
use timely::dataflow::Stream;

use crate::anomalies::{AnomalyConfig, AnomalyDetector};
use crate::keyed::{by_driver, keyed_in_time_order};
use crate::records::{Alert, EventTime, Sample, WindowResult};
use crate::windows::{LapSegments, SlidingWindows};

/// What the telemetry dataflow computes.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    pub sliding: SlidingWindows,
    pub anomalies: AnomalyConfig,
}

/// The two output streams of the telemetry dataflow.
pub struct TelemetryOutputs<'s> {
    pub windows: Stream<'s, EventTime, Vec<WindowResult>>,
    pub alerts: Stream<'s, EventTime, Vec<Alert>>,
}

/// Sliding, lap and sector windows plus anomaly detection, all per driver in event-time order.
pub fn telemetry_dataflow<'s>(samples: Stream<'s, EventTime, Vec<Sample>>, config: &TelemetryConfig) -> TelemetryOutputs<'s> {
    let samples = by_driver(samples);
    let sliding = keyed_in_time_order(&samples, "SlidingWindows", config.sliding);
    let laps = keyed_in_time_order(&samples, "LapWindows", LapSegments::Lap);
    let sectors = keyed_in_time_order(&samples, "SectorWindows", LapSegments::Sector);
    let alerts = keyed_in_time_order(&samples, "AnomalyDetector", AnomalyDetector { config: config.anomalies.clone() });
    TelemetryOutputs { windows: sliding.concat(laps).concat(sectors), alerts }
}
