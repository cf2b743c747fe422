//! The process-wide Prometheus metrics every worker of the job updates, and how a worker copies
//! its counts into them (names and meanings in the main README's metrics table).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitwall_connectors::kafka::group::MembershipStats;
use pitwall_connectors::kafka::metrics::SourceMetrics;
use pitwall_connectors::kafka::sink::SinkHandle;
use pitwall_connectors::store::UploadStats;
use pitwall_dataflows::infer::InferStats;
use pitwall_dataflows::keyed::StateGauge;
use prometheus::{CounterVec, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The process-wide metrics every worker updates.
#[derive(Clone)]
pub(crate) struct JobMetrics {
    pub(crate) source: SourceMetrics,
    pub(crate) state_keys: IntGaugeVec,
    pub(crate) state_bytes: IntGaugeVec,
    pub(crate) state_expired: IntGaugeVec,
    pub(crate) delivered: IntCounterVec,
    /// Records the broker refused for good, per sink (each replaced by a dead letter).
    pub(crate) undeliverable: IntCounterVec,
    /// A record's production (`produced_at_ms`) to its alert leaving the rules.
    pub(crate) alert_latency: Histogram,
    /// Items through a model and seconds spent in it, per pipeline (video, predictions).
    pub(crate) inferred: IntCounterVec,
    pub(crate) inference_seconds: CounterVec,
    /// Items a model gave no result for (its run failed), per pipeline.
    pub(crate) inference_failed: IntCounterVec,
    /// The same per pipeline with the newest failure, for `/health`.
    pub(crate) model_failures: ModelFailures,
    /// Overlayed videos stored or not, and bytes stored.
    pub(crate) uploads: IntCounterVec,
    pub(crate) upload_bytes: IntCounter,
    /// Points the bridge's live view holds, per buffer.
    pub(crate) live_points: IntGaugeVec,
    /// Records into and out of the main operators.
    pub(crate) operator_records: IntCounterVec,
    /// Samples raising each data-quality flag (`dataflows/src/quality.rs`).
    pub(crate) quality_flags: IntCounterVec,
    /// Group membership, per source topic: assignments received, partitions held, the last
    /// hand-over's pause (revoked to assigned again).
    /// Uploads failing and being retried right now (an S3 outage).
    pub(crate) uploads_retrying: prometheus::IntGauge,
    pub(crate) group_rebalances: IntCounterVec,
    pub(crate) group_partitions: IntGaugeVec,
    pub(crate) group_handover_seconds: GaugeVec,
}

impl JobMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<JobMetrics> {
        let gauge = |name: &str, help: &str, labels: &[&str]| registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?);
        let counter = |name: &str, help: &str, labels: &[&str]| registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?);
        let delivered = counter("pitwall_sink_delivered_total", "Records acknowledged by the broker, per sink", &["sink"])?;
        let undeliverable = counter(
            "pitwall_sink_undeliverable_total",
            "Records the broker refused for good (too large, invalid), per sink; each replaced by a dead letter naming it",
            &["sink"],
        )?;
        let alert_latency = registered(
            registry,
            Histogram::with_opts(
                HistogramOpts::new("pitwall_alert_latency_seconds", "A telemetry record's production to its alert leaving the rules")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
        )?;
        let inferred = counter("pitwall_inferred_total", "Items run through a model, per pipeline", &["pipeline"])?;
        let inference_seconds = registered(
            registry,
            CounterVec::new(Opts::new("pitwall_inference_seconds_total", "Seconds spent in model runs, per pipeline"), &["pipeline"])?,
        )?;
        let inference_failed =
            counter("pitwall_inference_failed_total", "Items a model gave no result for (the run failed), per pipeline", &["pipeline"])?;
        let uploads = counter("pitwall_uploads_total", "Overlayed videos stored or not, by outcome", &["outcome"])?;
        let upload_bytes = registered(registry, IntCounter::new("pitwall_upload_bytes_total", "Bytes of overlayed videos stored")?)?;
        let operator_records =
            counter("pitwall_operator_records_total", "Records into (direction=in) and out of (out) the main operators", &["operator", "direction"])?;
        let quality_flags = counter(
            "pitwall_data_quality_flags_total",
            "Telemetry samples raising a data-quality flag (processed, not rejected), per flag",
            &["flag"],
        )?;
        Ok(JobMetrics {
            source: SourceMetrics::register(registry)?,
            state_keys: gauge("pitwall_state_keys", "Keys (drivers) with state, per keyed operator and worker", &["operator", "worker"])?,
            state_bytes: gauge("pitwall_state_bytes", "Approximate bytes of state, per keyed operator and worker", &["operator", "worker"])?,
            state_expired: gauge(
                "pitwall_state_expired_keys",
                "Keys dropped after the key TTL so far, per keyed operator and worker",
                &["operator", "worker"],
            )?,
            delivered,
            undeliverable,
            alert_latency,
            inferred,
            inference_seconds,
            inference_failed,
            model_failures: ModelFailures::default(),
            uploads,
            upload_bytes,
            quality_flags,
            live_points: gauge("pitwall_bridge_points", "Points the bridge's live view holds, per buffer", &["buffer"])?,
            operator_records,
            uploads_retrying: registered(
                registry,
                prometheus::IntGauge::new("pitwall_uploads_retrying", "Overlayed videos whose upload failed and is being retried (never given up)")?,
            )?,
            group_rebalances: counter(
                "pitwall_group_rebalances_total",
                "Partition assignments this instance received from its consumer group",
                &["topic"],
            )?,
            group_partitions: gauge("pitwall_group_assigned_partitions", "Partitions this instance holds in its consumer group", &["topic"])?,
            group_handover_seconds: registered(
                registry,
                GaugeVec::new(
                    Opts::new("pitwall_group_handover_pause_seconds", "The last rebalance's pause: partitions revoked until assigned again"),
                    &["topic"],
                )?,
            )?,
        })
    }

    /// Copies a membership's counters in (worker 0, each metrics refresh).
    pub(crate) fn refresh_group(&self, topic: &str, stats: &MembershipStats) {
        let rebalances = self.group_rebalances.with_label_values(&[topic]);
        rebalances.inc_by(stats.rebalances.saturating_sub(rebalances.get()));
        self.group_partitions.with_label_values(&[topic]).set(stats.assigned as i64);
        if let Some(pause) = stats.last_pause {
            self.group_handover_seconds.with_label_values(&[topic]).set(pause.as_secs_f64());
        }
    }
}

/// `metric`, registered with `registry`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Copies this worker's state gauges and sink counts into the process's metrics.
pub(crate) fn refresh_worker_metrics(
    metrics: &JobMetrics,
    worker: &str,
    state: &[(&str, StateGauge)],
    sinks: &[(&str, SinkHandle)],
    reported: &mut Vec<(u64, u64)>,
) {
    for (operator, gauge) in state {
        let size = gauge.get();
        metrics.state_keys.with_label_values(&[operator, worker]).set(size.keys as i64);
        metrics.state_bytes.with_label_values(&[operator, worker]).set(size.bytes as i64);
        metrics.state_expired.with_label_values(&[operator, worker]).set(size.expired as i64);
    }
    reported.resize(sinks.len(), (0, 0));
    for ((name, sink), (delivered_before, refused_before)) in sinks.iter().zip(reported.iter_mut()) {
        let (delivered, refused) = (sink.delivered(), sink.undeliverable());
        metrics.delivered.with_label_values(&[name]).inc_by(delivered.saturating_sub(*delivered_before));
        metrics.undeliverable.with_label_values(&[name]).inc_by(refused.saturating_sub(*refused_before));
        (*delivered_before, *refused_before) = (delivered, refused);
    }
}

/// A model's failed runs in this process, per pipeline, for `/health`.
#[derive(Clone, Default)]
pub(crate) struct ModelFailures(Arc<Mutex<BTreeMap<&'static str, ModelFailure>>>);

#[derive(Clone, Debug)]
struct ModelFailure {
    failed: u64,
    last_at: Instant,
    last_error: String,
}

/// How long a model failure keeps `/health` degraded after the last failed run.
pub(crate) const MODEL_FAILURE_SHOWN: Duration = Duration::from_secs(60);

impl ModelFailures {
    fn add(&self, pipeline: &'static str, failed: u64, error: Option<String>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all.entry(pipeline).or_insert_with(|| ModelFailure { failed: 0, last_at: Instant::now(), last_error: String::new() });
        entry.failed += failed;
        entry.last_at = Instant::now();
        if let Some(error) = error {
            entry.last_error = error;
        }
    }

    /// `/health` reasons: each pipeline whose model failed within [`MODEL_FAILURE_SHOWN`].
    pub(crate) fn health_reasons(&self) -> Vec<String> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter(|(_, f)| f.last_at.elapsed() < MODEL_FAILURE_SHOWN)
            .map(|(pipeline, f)| {
                let model = if *pipeline == "video" { "fire" } else { "predictions" };
                format!(
                    "the {model} model failed on {} items so far, last {:.0} s ago ({pipeline} results without a verdict): {}",
                    f.failed,
                    f.last_at.elapsed().as_secs_f64(),
                    f.last_error
                )
            })
            .collect()
    }
}

/// What one worker's models and uploads had reported, to add only the difference each refresh.
#[derive(Default)]
pub(crate) struct WorkCounts {
    video_items: u64,
    video_us: u64,
    video_failed: u64,
    prediction_items: u64,
    prediction_us: u64,
    prediction_failed: u64,
    stored: u64,
    failed: u64,
    bytes: u64,
    duplicate_samples: u64,
}

impl WorkCounts {
    /// Adds the duplicate samples the telemetry dataflow dropped since the last refresh to the
    /// `duplicate_sample` quality flag.
    pub(crate) fn refresh_duplicates(&mut self, metrics: &JobMetrics, dropped: u64) {
        let flag = pitwall_dataflows::quality::QualityFlag::DuplicateSample.name();
        metrics.quality_flags.with_label_values(&[flag]).inc_by(dropped.saturating_sub(self.duplicate_samples));
        self.duplicate_samples = dropped;
    }

    pub(crate) fn refresh(&mut self, metrics: &JobMetrics, predictions: Option<&InferStats>, video: Option<(&InferStats, &UploadStats)>) {
        use std::sync::atomic::Ordering::Relaxed;
        let model = |pipeline: &'static str, stats: &InferStats, items: &mut u64, us: &mut u64, failed: &mut u64| {
            let (now_items, now_us, now_failed) = (stats.items.get(), stats.model_us.get(), stats.failed_items.get());
            metrics.inferred.with_label_values(&[pipeline]).inc_by(now_items.saturating_sub(*items));
            metrics.inference_seconds.with_label_values(&[pipeline]).inc_by(now_us.saturating_sub(*us) as f64 / 1e6);
            if now_failed > *failed {
                metrics.inference_failed.with_label_values(&[pipeline]).inc_by(now_failed - *failed);
                metrics.model_failures.add(pipeline, now_failed - *failed, stats.last_error.borrow().clone());
            }
            (*items, *us, *failed) = (now_items, now_us, now_failed);
        };
        if let Some(stats) = predictions {
            model("predictions", stats, &mut self.prediction_items, &mut self.prediction_us, &mut self.prediction_failed);
        }
        if let Some((stats, uploads)) = video {
            model("video", stats, &mut self.video_items, &mut self.video_us, &mut self.video_failed);
            let (stored, failed, bytes) = (uploads.stored.load(Relaxed), uploads.failed.load(Relaxed), uploads.bytes.load(Relaxed));
            metrics.uploads.with_label_values(&["stored"]).inc_by(stored.saturating_sub(self.stored));
            metrics.uploads.with_label_values(&["failed"]).inc_by(failed.saturating_sub(self.failed));
            metrics.upload_bytes.inc_by(bytes.saturating_sub(self.bytes));
            (self.stored, self.failed, self.bytes) = (stored, failed, bytes);
        }
    }
}

/// How often a worker refreshes the state and sink metrics.
pub(crate) const METRICS_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_model_degrades_health_with_its_reason_and_count() {
        let failures = ModelFailures::default();
        assert!(failures.health_reasons().is_empty(), "no failure, nothing to say");
        failures.add("video", 8, Some("invalid dimensions for input: images, Got: 8 Expected: 1".into()));
        failures.add("video", 3, None);
        let reasons = failures.health_reasons();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("the fire model failed on 11 items so far, last 0 s ago"), "{}", reasons[0]);
        assert!(reasons[0].ends_with("Got: 8 Expected: 1"), "the newest reason is kept: {}", reasons[0]);
        // Past the window, a model that recovered stops degrading health.
        let mut all = failures.0.lock().unwrap();
        let failure = all.get_mut("video").unwrap();
        let Some(earlier) = failure.last_at.checked_sub(MODEL_FAILURE_SHOWN) else { return };
        failure.last_at = earlier;
        drop(all);
        assert!(failures.health_reasons().is_empty());
    }
}
