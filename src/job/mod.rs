//! The telemetry job, wired: Kafka source -> decode -> telemetry dataflow -> Kafka sinks, on
//! every timely worker, with offsets committed once outputs are delivered.
//!
//! ```text
//!  f1-telemetry ──KafkaSource──┬─ok─► exchange(driver) ─► sliding / lap / sector windows ─► f1-windows
//!   (assign p % W == w)        │                        └► anomaly rules ─────────────────► f1-alerts (partition = severity)
//!                              ├─late records (behind the watermark) ─────────────────────► pitwall-late
//!                              └─dead letters (decode errors) ────────────────────────────► pitwall-dlq
//!  probe after all sinks ──► source commits offsets whose records' outputs are delivered
//! ```

pub mod video;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use differential_dataflow::input::InputSession;
use pitwall_connectors::bridge;
use pitwall_connectors::kafka::health::SourceHealth;
use pitwall_connectors::kafka::metrics::SourceMetrics;
use pitwall_connectors::kafka::sink::{publish, publish_rejects, KafkaProducer, RejectSinks, Route, SinkHandle};
use pitwall_connectors::kafka::source::{kafka_source, split_events, BoardShare, SourceConfig, SourceHandle, SourceStats, SplitEvents, WatermarkBoard};
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_connectors::onnx::tabular::WindowModel;
use pitwall_connectors::store::{ObjectStore, UploadStats};
use pitwall_dataflows::decode::{decode_telemetry, DecodePolicy};
use pitwall_dataflows::infer::InferStats;
use pitwall_dataflows::keyed::{KeyedOptions, StateGauge};
use pitwall_dataflows::live::{feed, LiveConfig, LiveStore};
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::predict::{predict_windows, Prediction};
use pitwall_dataflows::quality::{sample_flags, QualityFlag};
use pitwall_dataflows::queries::{live_queries, publish_results, Command, Query, QueryHub};
use pitwall_dataflows::records::{Alert, Sample, WindowResult};
use pitwall_dataflows::restart::drop_delivered;
use prometheus::{CounterVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Serialize;
use timely::dataflow::operators::core::Filter;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::cli::{BridgeArgs, DataflowArgs, ModelArgs, Pipeline, TimelyArgs};
use crate::topics::ALERT_PARTITIONS;
use self::video::{batching, build_video, check_models, open_store, predictions_source, VideoReport, VideoSettings};

/// Everything a worker needs to build the job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    pub kafka: KafkaConfig,
    pub dataflow: DataflowArgs,
    /// Which dataflows run.
    pub pipelines: Vec<Pipeline>,
    /// Model, video and storage settings.
    pub models: ModelArgs,
    pub exit_at_end: bool,
    /// Where to serve /metrics and /health, if anywhere.
    pub bridge: BridgeArgs,
}

impl JobConfig {
    pub fn runs(&self, pipeline: Pipeline) -> bool {
        self.pipelines.contains(&pipeline)
    }
}

/// The process-wide metrics every worker updates.
#[derive(Clone)]
struct JobMetrics {
    source: SourceMetrics,
    state_keys: IntGaugeVec,
    state_bytes: IntGaugeVec,
    state_expired: IntGaugeVec,
    delivered: IntCounterVec,
    /// A record's production (`produced_at_ms`) to its alert leaving the rules.
    alert_latency: Histogram,
    /// Items through a model and seconds spent in it, per pipeline (video, predictions).
    inferred: IntCounterVec,
    inference_seconds: CounterVec,
    /// Overlayed videos stored or not, and bytes stored.
    uploads: IntCounterVec,
    upload_bytes: IntCounter,
    /// Points the bridge's live view holds, per buffer.
    live_points: IntGaugeVec,
    /// Records into and out of the main operators.
    operator_records: IntCounterVec,
    /// Samples raising each data-quality flag (`dataflows/src/quality.rs`).
    quality_flags: IntCounterVec,
}

impl JobMetrics {
    fn register(registry: &Registry) -> prometheus::Result<JobMetrics> {
        let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let delivered = IntCounterVec::new(Opts::new("pitwall_sink_delivered_total", "Records acknowledged by the broker, per sink"), &["sink"])?;
        registry.register(Box::new(delivered.clone()))?;
        let alert_latency = Histogram::with_opts(
            HistogramOpts::new("pitwall_alert_latency_seconds", "A telemetry record's production to its alert leaving the rules")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(alert_latency.clone()))?;
        let inferred = IntCounterVec::new(Opts::new("pitwall_inferred_total", "Items run through a model, per pipeline"), &["pipeline"])?;
        registry.register(Box::new(inferred.clone()))?;
        let inference_seconds =
            CounterVec::new(Opts::new("pitwall_inference_seconds_total", "Seconds spent in model runs, per pipeline"), &["pipeline"])?;
        registry.register(Box::new(inference_seconds.clone()))?;
        let uploads = IntCounterVec::new(Opts::new("pitwall_uploads_total", "Overlayed videos stored or not, by outcome"), &["outcome"])?;
        registry.register(Box::new(uploads.clone()))?;
        let upload_bytes = IntCounter::new("pitwall_upload_bytes_total", "Bytes of overlayed videos stored")?;
        registry.register(Box::new(upload_bytes.clone()))?;
        let operator_records = IntCounterVec::new(
            Opts::new("pitwall_operator_records_total", "Records into (direction=in) and out of (out) the main operators"),
            &["operator", "direction"],
        )?;
        registry.register(Box::new(operator_records.clone()))?;
        let quality_flags = IntCounterVec::new(
            Opts::new("pitwall_data_quality_flags_total", "Telemetry samples raising a data-quality flag (processed, not rejected), per flag"),
            &["flag"],
        )?;
        registry.register(Box::new(quality_flags.clone()))?;
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
            alert_latency,
            inferred,
            inference_seconds,
            uploads,
            upload_bytes,
            quality_flags,
            live_points: gauge("pitwall_bridge_points", "Points the bridge's live view holds, per buffer", &["buffer"])?,
            operator_records,
        })
    }
}

/// What one process's workers did, summed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobReport {
    pub workers: usize,
    pub messages: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub late: u64,
    pub alerts: u64,
    pub windows: u64,
    /// Alerts and windows a restart re-derived that the crashed run had delivered: not sent again.
    pub already_delivered: u64,
    pub predictions: u64,
    /// Video frames run through the fire model, detections and completed videos published.
    pub frames: u64,
    pub detections: u64,
    pub videos: u64,
    /// Overlayed videos stored, and videos that could not be.
    pub videos_stored: u64,
    pub video_store_failures: u64,
    pub commits: u64,
    /// Stall episodes (broker unreachable, then back) over all partitions.
    pub stalls: u64,
    /// Offsets the broker never delivered (gaps in a partition); see `SourceStats`.
    pub skipped_offsets: u64,
    /// Most telemetry samples waiting for the watermark at once, per worker, summed over this
    /// process's workers (`--max-read-ahead-ms` bounds it when a backlog is replayed).
    pub held_peak: u64,
    /// Samples (of this process) raising each data-quality flag: processed, not rejected.
    pub data_quality_flags: BTreeMap<String, u64>,
    /// From the job's start (before the workers create their clients) to the moment the last
    /// worker had delivered its outputs and committed its offsets; releasing the Kafka clients
    /// afterwards (librdkafka's close handshakes, ~0.2 s) is not counted.
    pub seconds: f64,
    pub msg_per_s: f64,
}

impl JobReport {
    fn add(&mut self, worker: &WorkerReport) {
        self.workers += 1;
        self.messages += worker.source.messages;
        self.records += worker.source.records;
        self.dead_letters += worker.source.dead_letters;
        self.late += worker.source.late;
        self.commits += worker.source.commits;
        self.stalls += worker.source.stalls;
        self.skipped_offsets += worker.source.skipped_offsets;
        self.held_peak += worker.held_peak;
        self.alerts += worker.alerts;
        self.windows += worker.windows;
        self.already_delivered += worker.already_delivered;
        self.predictions += worker.predictions;
        if let Some((source, video)) = &worker.video {
            self.messages += source.messages;
            self.dead_letters += source.dead_letters;
            self.late += source.late;
            self.commits += source.commits;
            self.stalls += source.stalls;
            self.skipped_offsets += source.skipped_offsets;
            self.frames += video.frames;
            self.detections += video.detections;
            self.videos += video.videos;
            self.videos_stored += video.stored;
            self.video_store_failures += video.store_failures;
        }
    }
}

#[derive(Default)]
struct WorkerReport {
    source: SourceStats,
    alerts: u64,
    windows: u64,
    already_delivered: u64,
    predictions: u64,
    video: Option<(SourceStats, VideoReport)>,
    /// Most samples this worker's `in_time_order` held at once.
    held_peak: u64,
    /// When this worker's outputs were all delivered and its offsets committed.
    finished: Option<Instant>,
}

/// Timely's communication config from the `-w -n -p -h` flags.
pub fn timely_config(args: &TimelyArgs) -> Result<timely::Config> {
    if args.workers == 0 || args.processes == 0 || args.process >= args.processes {
        bail!("need -w >= 1, -n >= 1 and 0 <= -p < -n (got -w {} -n {} -p {})", args.workers, args.processes, args.process);
    }
    let communication = if args.processes > 1 {
        let addresses: Vec<String> = match &args.hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading hostfile {}", path.display()))?;
                let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).take(args.processes).collect();
                if lines.len() < args.processes {
                    bail!("hostfile {} has {} addresses but -n is {}", path.display(), lines.len(), args.processes);
                }
                lines
            }
            None => (0..args.processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
        };
        timely::CommunicationConfig::Cluster { threads: args.workers, process: args.process, addresses, report: false, zerocopy: false }
    } else if args.workers > 1 {
        timely::CommunicationConfig::Process(args.workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
}

/// Checks what the job needs from the broker before any worker starts.
pub fn preflight(config: &JobConfig) -> Result<()> {
    let models = &config.models;
    if config.pipelines.is_empty() {
        bail!("--pipelines is empty: name at least one of telemetry, predictions, video");
    }
    if config.runs(Pipeline::Predictions) && !config.runs(Pipeline::Telemetry) {
        bail!("--pipelines predictions needs telemetry too (predictions are made from its windows)");
    }
    // Checked here, not first in a worker: a bad flag is the user's error, not a worker panic.
    config.dataflow.sliding_windows()?;
    let consumer = config.kafka.plain_consumer(&config.dataflow.group)?;
    let mut topics = vec![&config.dataflow.dlq_topic, &config.dataflow.late_topic];
    if config.runs(Pipeline::Telemetry) {
        // The input first: a missing input topic is the likelier mistake, and names the fix.
        config.kafka.partition_count(&consumer, &config.dataflow.telemetry_topic)?;
        let alerts = config.kafka.partition_count(&consumer, &config.dataflow.alerts_topic)?;
        if alerts < ALERT_PARTITIONS {
            bail!("topic `{}` has {alerts} partitions; alerts need {ALERT_PARTITIONS} (high=0, medium=1, low=2)", config.dataflow.alerts_topic);
        }
        topics.push(&config.dataflow.windows_topic);
    }
    if config.runs(Pipeline::Predictions) {
        topics.push(&models.predictions_topic);
    }
    if config.runs(Pipeline::Video) {
        topics.extend([&models.video_topic, &models.detections_topic, &models.completions_topic]);
    }
    for topic in topics {
        config.kafka.partition_count(&consumer, topic)?;
    }
    Ok(())
}

/// Runs the job on this process's workers until the input ends (`exit_at_end`) or `shutdown`.
pub fn run_job(config: JobConfig, timely: timely::Config, shutdown: Arc<AtomicBool>) -> Result<JobReport> {
    // Models first: they need no broker, and a missing library is the likelier mistake.
    let (video, predictions) = (config.runs(Pipeline::Video), config.runs(Pipeline::Predictions));
    check_models(&config.models, video, predictions)?;
    preflight(&config)?;
    let store = if video {
        let store = open_store(&config.models)?;
        eprintln!("overlayed videos go to {}", store.describe());
        Some(store)
    } else {
        None
    };
    let started = Instant::now();
    let registry = Registry::new();
    let metrics = JobMetrics::register(&registry).context("registering metrics")?;
    let sources: Arc<Mutex<Vec<SourceHealth>>> = Arc::default();
    // The live view the bridge answers Grafana from, fed by the workers (only with a bridge).
    // One watermark board per source topic: workers with only idle partitions follow the others.
    let boards = (WatermarkBoard::default(), WatermarkBoard::default());
    // Worker 0 takes live queries in and gathers their results: its process serves them.
    let hosts_worker_zero = !matches!(timely.communication, timely::CommunicationConfig::Cluster { process, .. } if process != 0);
    let live = config.bridge.bridge.map(|_| {
        let live = LiveStore::new(LiveConfig { points_per_driver: config.bridge.bridge_points.max(1), ..LiveConfig::default() });
        if hosts_worker_zero && config.runs(Pipeline::Telemetry) {
            live.with_queries()
        } else {
            live
        }
    });
    if let Some(addr) = config.bridge.bridge {
        let watched = sources.clone();
        let health: bridge::HealthCheck = Arc::new(move || {
            let sources = watched.lock().expect("health list lock");
            sources.iter().flat_map(|s| s.partitions()).filter_map(|p| p.stalled).collect()
        });
        let bound = bridge::serve(
            addr,
            registry,
            health,
            bridge::Access { token: config.bridge.bridge_token.clone(), cors_origins: config.bridge.bridge_cors_origin.clone() },
            live.clone(),
        )?;
        eprintln!("bridge: http://{bound}/metrics, http://{bound}/health and Grafana's JSON datasource at http://{bound}/grafana");
    }
    let queries_possible = queries_possible(live.as_ref(), &timely.communication);
    let config = Arc::new(config);
    let quality_flags = metrics.quality_flags.clone();
    let guards = timely::execute(timely, move |worker| -> Result<WorkerReport, String> {
        let shared = ProcessShared {
            store: store.clone(),
            live: live.clone(),
            boards: boards.clone(),
            metrics: &metrics,
            sources: &sources,
            queries_possible,
        };
        run_worker(worker, &config, shared, shutdown.clone()).map_err(|e| format!("{e:#}"))
    })
    .map_err(|e| anyhow::anyhow!("starting timely: {e}"))?;
    let mut report = JobReport::default();
    let mut finished = None;
    for result in guards.join() {
        let worker = result.map_err(|e| anyhow::anyhow!("a worker panicked: {e}"))?.map_err(|e| anyhow::anyhow!(e))?;
        report.add(&worker);
        finished = finished.max(worker.finished);
    }
    report.seconds = finished.unwrap_or_else(Instant::now).duration_since(started).as_secs_f64();
    report.msg_per_s = report.messages as f64 / report.seconds.max(1e-9);
    report.data_quality_flags =
        QualityFlag::ALL.iter().map(|f| (f.name().to_string(), quality_flags.with_label_values(&[f.name()]).get())).filter(|(_, n)| *n > 0).collect();
    Ok(report)
}

/// How long a parked worker sleeps when nothing activates it.
const PARK: Duration = Duration::from_millis(20);

/// Whether a live query can ever reach this process's workers. Queries enter only through
/// worker 0's bridge: one process without that can never get one, while a process of a cluster
/// cannot tell whether process 0 serves a bridge.
fn queries_possible(live: Option<&LiveStore>, communication: &timely::CommunicationConfig) -> bool {
    live.is_some_and(|l| l.queries().is_some()) || matches!(communication, timely::CommunicationConfig::Cluster { .. })
}

/// Copies this worker's state gauges and sink counts into the process's metrics.
fn refresh_worker_metrics(metrics: &JobMetrics, worker: &str, state: &[(&str, StateGauge)], sinks: &[(&str, SinkHandle)], reported: &mut Vec<u64>) {
    for (operator, gauge) in state {
        let size = gauge.get();
        metrics.state_keys.with_label_values(&[operator, worker]).set(size.keys as i64);
        metrics.state_bytes.with_label_values(&[operator, worker]).set(size.bytes as i64);
        metrics.state_expired.with_label_values(&[operator, worker]).set(size.expired as i64);
    }
    reported.resize(sinks.len(), 0);
    for ((name, sink), reported) in sinks.iter().zip(reported.iter_mut()) {
        let delivered = sink.delivered();
        metrics.delivered.with_label_values(&[name]).inc_by(delivered.saturating_sub(*reported));
        *reported = delivered;
    }
}

/// What one worker's models and uploads had reported, to add only the difference each refresh.
#[derive(Default)]
struct WorkCounts {
    video_items: u64,
    video_us: u64,
    prediction_items: u64,
    prediction_us: u64,
    stored: u64,
    failed: u64,
    bytes: u64,
}

impl WorkCounts {
    fn refresh(&mut self, metrics: &JobMetrics, predictions: Option<&InferStats>, video: Option<(&InferStats, &UploadStats)>) {
        use std::sync::atomic::Ordering::Relaxed;
        let model = |pipeline: &str, stats: &InferStats, items: &mut u64, us: &mut u64| {
            let (now_items, now_us) = (stats.items.get(), stats.model_us.get());
            metrics.inferred.with_label_values(&[pipeline]).inc_by(now_items.saturating_sub(*items));
            metrics.inference_seconds.with_label_values(&[pipeline]).inc_by(now_us.saturating_sub(*us) as f64 / 1e6);
            (*items, *us) = (now_items, now_us);
        };
        if let Some(stats) = predictions {
            model("predictions", stats, &mut self.prediction_items, &mut self.prediction_us);
        }
        if let Some((stats, uploads)) = video {
            model("video", stats, &mut self.video_items, &mut self.video_us);
            let (stored, failed, bytes) = (uploads.stored.load(Relaxed), uploads.failed.load(Relaxed), uploads.bytes.load(Relaxed));
            metrics.uploads.with_label_values(&["stored"]).inc_by(stored.saturating_sub(self.stored));
            metrics.uploads.with_label_values(&["failed"]).inc_by(failed.saturating_sub(self.failed));
            metrics.upload_bytes.inc_by(bytes.saturating_sub(self.bytes));
            (self.stored, self.failed, self.bytes) = (stored, failed, bytes);
        }
    }
}

/// How often a worker refreshes the state and sink metrics.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// One worker's telemetry dataflow (and predictions), built.
struct TelemetryParts {
    probe: ProbeHandle<u64>,
    source: SourceHandle,
    state: Vec<(&'static str, StateGauge)>,
    /// alerts, windows, dead letters, late, then predictions if they run.
    sinks: Vec<(&'static str, SinkHandle)>,
    /// The predictions model's counts, if predictions run.
    inference: Option<InferStats>,
    /// The live queries' input: worker 0 inserts, every worker advances it with `query_clock`.
    queries: Option<InputSession<u64, (u64, Query), isize>>,
    /// The sliding windows' frontier.
    query_clock: ProbeHandle<u64>,
    /// Outputs of a replay that the crashed run had delivered, dropped before the sinks.
    already_delivered: Vec<Rc<Cell<u64>>>,
}

fn build_telemetry(
    worker: &mut timely::worker::Worker,
    config: &JobConfig,
    producer: &KafkaProducer,
    shared: &ProcessShared<'_>,
    shutdown: Arc<AtomicBool>,
) -> Result<TelemetryParts> {
    let (metrics, live, board, queries_possible) = (shared.metrics, shared.live.clone(), shared.boards.0.clone(), shared.queries_possible);
    let args = &config.dataflow;
    let models = &config.models;
    let policy = DecodePolicy {
        max_record_bytes: args.max_record_bytes,
        known_drivers: args.drivers.as_ref().map(|d| d.iter().cloned().collect::<BTreeSet<_>>()),
    };
    let telemetry = TelemetryConfig {
        sliding: args.sliding_windows()?,
        keyed: KeyedOptions { key_ttl_ms: (args.key_ttl_ms > 0).then_some(args.key_ttl_ms), time_granularity_ms: args.time_granularity_ms },
        alerts_after_watermark: args.alerts_after_watermark,
        ..Default::default()
    };
    let predictor =
        if config.runs(Pipeline::Predictions) { Some(WindowModel::load(&predictions_source(models), models.intra_threads)?) } else { None };
    let mut source = SourceConfig::new(config.kafka.clone(), &args.telemetry_topic);
    source.group = args.group.clone();
    source.allowed_lateness_ms = args.allowed_lateness_ms;
    args.apply_source_timing(&mut source);
    source.max_batch = args.max_poll_batch.max(1);
    source.max_read_ahead_ms = (args.max_read_ahead_ms > 0).then_some(args.max_read_ahead_ms);
    source.metrics = Some(metrics.source.clone());
    source.exit_at_end = config.exit_at_end;
    source.board = Some(board);

    let probe = ProbeHandle::new();
    let mut inference = None;
    let first_worker = worker.index() == 0;
    let parts = worker.dataflow::<u64, _, _>(|scope| -> Result<_> {
        let flagged: Vec<_> = QualityFlag::ALL.iter().map(|f| metrics.quality_flags.with_label_values(&[f.name()])).collect();
        let decode = move |at, key: Option<&[u8]>, payload: &[u8]| {
            let record = decode_telemetry(key, payload, &policy).map_err(|e| e.to_string())?;
            for flag in sample_flags(&record) {
                // ALL lists the flags in declaration order.
                flagged[flag as usize].inc();
            }
            Ok((record.session_time_ms, Sample { at, record }))
        };
        let (events, handle) = kafka_source(scope, source, decode, probe.clone(), shutdown)?;
        let SplitEvents { records: samples, late, dead } = split_events(events);
        // Every process builds the same operators whether or not it serves a bridge (timely
        // requires one dataflow shape across the cluster); without a live view they do nothing.
        let for_samples = live.clone();
        let samples_in = metrics.operator_records.with_label_values(&["telemetry_dataflow", "in"]);
        let samples = feed(samples, move |batch: &[Sample]| {
            samples_in.inc_by(batch.len() as u64);
            if let Some(live) = &for_samples {
                live.push_samples(batch);
            }
        });
        let mut outputs = telemetry_dataflow(samples, &telemetry);
        // Live queries over the windows, on every worker of every process (the arrangement is
        // partitioned by metric); results are gathered at worker 0, whose process serves them.
        // Queries read the sliding windows, and their input follows the sliding windows'
        // frontier (lap windows hold theirs at the lap's start until the lap ends).
        // Where no query can ever come, the query dataflow is still built (one shape everywhere)
        // but fed nothing: arranging every window result for no reader was ~4% of the job's
        // instructions.
        let (query_clock, sliding) = outputs.sliding.clone().probe();
        let live_query = live_queries(sliding.filter(move |_| queries_possible), outputs.alerts.clone().filter(move |_| queries_possible));
        publish_results(live_query.results, live.as_ref().and_then(|l| l.queries()).cloned().unwrap_or_default());
        let queries = Some(live_query.input);
        let latency = metrics.alert_latency.clone();
        outputs.alerts = feed(outputs.alerts, move |batch: &[Alert]| {
            let now = pitwall_dataflows::records::now_ms();
            for produced in batch.iter().filter_map(|a| a.produced_at_ms) {
                latency.observe(now.saturating_sub(produced) as f64 / 1_000.0);
            }
        });
        let (for_windows, for_alerts) = (live.clone(), live.clone());
        let windows_out = metrics.operator_records.with_label_values(&["windows", "out"]);
        let alerts_out = metrics.operator_records.with_label_values(&["anomaly_rules", "out"]);
        outputs.windows = feed(outputs.windows, move |batch: &[WindowResult]| {
            windows_out.inc_by(batch.len() as u64);
            if let Some(live) = &for_windows {
                live.push_windows(batch);
            }
        });
        outputs.alerts = feed(outputs.alerts, move |batch: &[Alert]| {
            alerts_out.inc_by(batch.len() as u64);
            if let Some(live) = &for_alerts {
                live.push_alerts(batch);
            }
        });
        // After a crash: what the crashed run had delivered is not sent again (the marks come
        // from the companion group, per partition, read by the source at start; `dataflows/src/restart.rs`).
        let marks = handle.delivered_before();
        if first_worker && marks.iter().any(Option::is_some) {
            tracing::info!(?marks, "resuming after an unclean stop: outputs before these times (per partition) were delivered and are not re-sent");
        }
        let alert_mark = handle.key_marks();
        let window_mark = alert_mark.clone();
        let (alerts_in, dropped_alerts) = drop_delivered(outputs.alerts, "AlertsDelivered", move |a: &Alert| alert_mark(a.driver.as_bytes()), |_| {});
        let (windows_in, dropped_windows) =
            drop_delivered(outputs.windows, "WindowsDelivered", move |w: &WindowResult| window_mark(w.driver.as_bytes()), |_| {});
        outputs.alerts = alerts_in;
        outputs.windows = windows_in;
        let already_delivered = vec![dropped_alerts, dropped_windows];
        let alerts_topic = args.alerts_topic.clone();
        let (alerts_done, alerts) = publish(outputs.alerts, producer, "AlertSink", move |a: &Alert| Route {
            topic: alerts_topic.clone(),
            key: Some(a.driver.clone()),
            partition: Some(a.severity.partition()),
        });
        let mut sinks = Vec::new();
        if let Some(model) = predictor {
            let card = model.card.clone();
            let (predictions, stats) = predict_windows(outputs.windows.clone(), model, card, batching(models));
            inference = Some(stats);
            let topic = models.predictions_topic.clone();
            let (done, sink) = publish(predictions, producer, "PredictionSink", move |p: &Prediction| Route {
                topic: topic.clone(),
                key: Some(p.model_type.clone()),
                partition: None,
            });
            done.probe_with(&probe);
            sinks.push(("predictions", sink));
        }
        let windows_topic = args.windows_topic.clone();
        let (windows_done, windows) = publish(outputs.windows, producer, "WindowSink", move |w: &WindowResult| Route {
            topic: windows_topic.clone(),
            key: Some(w.driver.clone()),
            partition: None,
        });
        let RejectSinks { dead: (dead_done, dead_letters), late: (late_done, late_sink) } =
            publish_rejects(dead, late, producer, &args.dlq_topic, &args.late_topic, "");
        late_done.probe_with(&probe);
        alerts_done.probe_with(&probe);
        windows_done.probe_with(&probe);
        dead_done.probe_with(&probe);
        let mut all = vec![("alerts", alerts), ("windows", windows), ("dead_letters", dead_letters), ("late", late_sink)];
        all.extend(sinks);
        Ok(TelemetryParts {
            probe: probe.clone(),
            source: handle,
            state: outputs.state,
            sinks: all,
            inference: None,
            queries,
            query_clock,
            already_delivered,
        })
    })?;
    Ok(TelemetryParts { inference, ..parts })
}

/// Takes new and removed queries in (worker 0) and moves the query input along with the job's
/// progress (every worker), closing it once the telemetry input has ended.
fn feed_queries(
    queries: &mut Option<InputSession<u64, (u64, Query), isize>>,
    probe: &ProbeHandle<u64>,
    hub: Option<&QueryHub>,
    takes_commands: bool,
) {
    let Some(input) = queries.as_mut() else { return };
    if takes_commands {
        for command in hub.map(QueryHub::take_pending).unwrap_or_default() {
            match command {
                Command::Add(id, query) => input.insert((id, query)),
                Command::Remove(id, query) => input.remove((id, query)),
            }
        }
    }
    match probe.with_frontier(|f| f.first().copied()) {
        Some(time) => {
            if time > *input.time() {
                input.advance_to(time);
            }
            input.flush();
        }
        None => *queries = None,
    }
}

/// What the workers of one process share.
struct ProcessShared<'a> {
    /// Where overlayed videos go (the video pipeline runs when it is set).
    store: Option<Arc<ObjectStore>>,
    /// The bridge's live view (with a bridge).
    live: Option<LiveStore>,
    /// Watermark boards of the telemetry and video sources.
    boards: (WatermarkBoard, WatermarkBoard),
    metrics: &'a JobMetrics,
    sources: &'a Mutex<Vec<SourceHealth>>,
    /// Whether a live query can ever reach this job (see `run_job`).
    queries_possible: bool,
}

fn run_worker(worker: &mut timely::worker::Worker, config: &JobConfig, shared: ProcessShared<'_>, shutdown: Arc<AtomicBool>) -> Result<WorkerReport> {
    let producer = KafkaProducer::new(&config.kafka)?;
    let mut telemetry =
        if config.runs(Pipeline::Telemetry) { Some(build_telemetry(worker, config, &producer, &shared, shutdown.clone())?) } else { None };
    let ProcessShared { store, live, boards, metrics, sources, .. } = shared;
    let video = match store {
        Some(store) => {
            let settings = VideoSettings {
                kafka: &config.kafka,
                dataflow: &config.dataflow,
                models: &config.models,
                exit_at_end: config.exit_at_end,
                store,
                metrics: Some(metrics.source.clone()),
                live: live.clone(),
                board: boards.1.clone(),
                operator_records: metrics.operator_records.clone(),
            };
            Some(build_video(worker, &settings, &producer, shutdown)?)
        }
        None => None,
    };
    let mut board_share = BoardShare::build(worker, &boards);
    let mut query_input = telemetry.as_mut().and_then(|t| t.queries.take());
    let telemetry_probe = telemetry.as_ref().map(|t| t.query_clock.clone());
    let mut health = sources.lock().expect("health list lock");
    health.extend(telemetry.iter().map(|t| t.source.health()));
    health.extend(video.iter().map(|v| v.source.health()));
    drop(health);
    let worker_label = worker.index().to_string();
    let no_state = Vec::new();
    let state = telemetry.as_ref().map(|t| &t.state).unwrap_or(&no_state);
    let sinks: Vec<(&str, SinkHandle)> =
        telemetry.iter().flat_map(|t| t.sinks.iter()).chain(video.iter().flat_map(|v| v.sinks.iter())).cloned().collect();
    let mut reported = Vec::new();
    let mut last_metrics = Instant::now();
    let done = || telemetry.as_ref().is_none_or(|t| t.probe.done()) && video.as_ref().is_none_or(|v| v.probe.done());
    let hub = live.as_ref().and_then(|l| l.queries()).cloned();
    let mut work = WorkCounts::default();
    // The first worker reports the live view's size (one view per process).
    let reports_live = worker.index() == 0;
    let refresh_work = |work: &mut WorkCounts| {
        let predictions = telemetry.as_ref().and_then(|t| t.inference.as_ref());
        work.refresh(metrics, predictions, video.as_ref().map(|v| (&v.inference, &v.uploads)));
        if let (Some(live), true) = (&live, reports_live) {
            for (buffer, points) in live.sizes() {
                metrics.live_points.with_label_values(&[buffer]).set(points as i64);
            }
        }
    };
    while !done() {
        if let (Some(probe), true) = (&telemetry_probe, query_input.is_some()) {
            feed_queries(&mut query_input, probe, hub.as_ref(), worker.index() == 0);
        }
        board_share.tick(worker.index());
        worker.step_or_park(Some(PARK));
        if last_metrics.elapsed() >= METRICS_INTERVAL {
            last_metrics = Instant::now();
            refresh_worker_metrics(metrics, &worker_label, state, &sinks, &mut reported);
            refresh_work(&mut work);
        }
    }
    board_share.close();
    refresh_worker_metrics(metrics, &worker_label, state, &sinks, &mut reported);
    refresh_work(&mut work);
    for source in telemetry.iter().map(|t| &t.source).chain(video.iter().map(|v| &v.source)) {
        source.commit_all()?;
    }
    producer.flush(Duration::from_secs(30))?;
    let mut report = WorkerReport { finished: Some(Instant::now()), ..WorkerReport::default() };
    if let Some(t) = &telemetry {
        report.source = t.source.stats();
        report.alerts = t.sinks[0].1.delivered();
        report.windows = t.sinks[1].1.delivered();
        report.already_delivered = t.already_delivered.iter().map(|c| c.get()).sum();
        report.predictions = t.sinks.get(4).map(|(_, s)| s.delivered()).unwrap_or(0);
        report.held_peak = t.state.iter().find(|(name, _)| *name == "in_time_order").map_or(0, |(_, g)| g.get().peak_keys as u64);
    }
    report.video = video.as_ref().map(|v| (v.source.stats(), v.report()));
    report.already_delivered += video.as_ref().map_or(0, |v| v.stored_before.get());
    tracing::info!(worker = worker.index(), stats = ?report.source, alerts = report.alerts, windows = report.windows, "worker finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::queries_possible;
    use pitwall_dataflows::live::{LiveConfig, LiveStore};
    use timely::CommunicationConfig;

    #[test]
    fn live_queries_are_fed_unless_one_process_has_no_query_bridge() {
        let with_hub = LiveStore::new(LiveConfig::default()).with_queries();
        let view_only = LiveStore::new(LiveConfig::default());
        let cluster = |process| CommunicationConfig::Cluster { threads: 1, process, addresses: vec![], report: false, zerocopy: false };
        assert!(!queries_possible(None, &CommunicationConfig::Process(2)), "one process, no bridge: nobody can ask");
        assert!(!queries_possible(Some(&view_only), &CommunicationConfig::Thread), "a bridge without the query hub");
        assert!(queries_possible(Some(&with_hub), &CommunicationConfig::Process(2)), "worker 0's bridge takes queries");
        assert!(queries_possible(None, &cluster(1)), "another process may serve them");
        assert!(queries_possible(None, &cluster(0)), "process 0 without a bridge cannot tell the others");
    }
}
