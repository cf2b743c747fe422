//! Prometheus metrics of the Kafka source, per topic and partition. Names are documented in the
//! main README ("Time, progress and state").

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The source's metrics; cheap to clone (shared counters), one set per process.
#[derive(Clone)]
pub struct SourceMetrics {
    pub records: IntCounterVec,
    pub bytes: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub late: IntCounterVec,
    /// High watermark minus committed offset.
    pub consumer_lag: IntGaugeVec,
    /// 1 while the broker does not answer for the partition.
    pub stalled: IntGaugeVec,
    /// The partition's newest event time minus the reading worker's watermark (ms).
    pub watermark_lag_ms: IntGaugeVec,
    /// The watermark of the worker reading the partition (event-time ms).
    pub watermark_ms: IntGaugeVec,
}

impl SourceMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<SourceMetrics> {
        let labels = ["topic", "partition"];
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), &labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), &labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        Ok(SourceMetrics {
            records: counter("pitwall_source_records_total", "Records read and accepted, per partition")?,
            bytes: counter("pitwall_source_bytes_total", "Message bytes read, per partition")?,
            dead_letters: counter("pitwall_source_decode_errors_total", "Messages sent to the dead-letter topic, per partition")?,
            late: counter("pitwall_source_late_records_total", "Records behind the watermark, sent to the late topic, per partition")?,
            consumer_lag: gauge("pitwall_source_consumer_lag", "High watermark minus committed offset, per partition")?,
            stalled: gauge("pitwall_source_stalled", "1 while the broker does not answer for the partition")?,
            watermark_lag_ms: gauge("pitwall_source_watermark_lag_ms", "Newest event time of the partition minus the watermark (ms)")?,
            watermark_ms: gauge("pitwall_source_watermark_ms", "Watermark of the worker reading the partition (event-time ms)")?,
        })
    }
}
