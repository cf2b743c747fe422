//! Prometheus metrics of the Kafka source, per topic and partition, and of the producers of
//! `pitwall produce` (`--metrics`), per topic. Names are documented in the main README ("Time,
//! progress and state").

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

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

/// A producer's metrics per topic (`pitwall produce telemetry|video --metrics ADDR`): records
/// and bytes delivered, delivery errors, librdkafka's retries, the messages waiting in its queue
/// and the send latency (the record's creation to the broker's acknowledgement).
#[derive(Clone)]
pub struct ProducerMetrics {
    pub records: IntCounterVec,
    pub bytes: IntCounterVec,
    pub errors: IntCounterVec,
    pub retries: IntCounterVec,
    pub queue: IntGaugeVec,
    pub latency: HistogramVec,
}

impl ProducerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<ProducerMetrics> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), &["topic"])?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let queue = IntGaugeVec::new(
            Opts::new("pitwall_producer_queue_messages", "Messages waiting in the producer's queue (librdkafka's msg_cnt)"),
            &["topic"],
        )?;
        registry.register(Box::new(queue.clone()))?;
        let latency = HistogramVec::new(
            HistogramOpts::new("pitwall_producer_send_latency_seconds", "A record's creation to the broker's acknowledgement")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["topic"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        Ok(ProducerMetrics {
            records: counter("pitwall_producer_records_total", "Records the broker acknowledged")?,
            bytes: counter("pitwall_producer_bytes_total", "Payload bytes the broker acknowledged")?,
            errors: counter("pitwall_producer_errors_total", "Records whose delivery failed after librdkafka's retries")?,
            retries: counter("pitwall_producer_retries_total", "Produce requests librdkafka sent again (its statistics' txretries)")?,
            queue,
            latency,
        })
    }
}

impl std::fmt::Debug for ProducerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProducerMetrics")
    }
}
