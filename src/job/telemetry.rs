//! The telemetry dataflow of one worker, wired: Kafka source -> decode -> telemetry dataflow ->
//! Kafka sinks, with the live view and live queries fed on the way and offsets committed once
//! outputs are delivered.
//!
//! ```text
//!  f1-telemetry ──KafkaSource──┬─ok─► exchange(driver) ─► sliding / lap / sector windows ─► f1-windows
//!   (assign p % W == w)        │                        └► anomaly rules ─────────────────► f1-alerts (partition = severity)
//!                              ├─late records (behind the watermark) ─────────────────────► pitwall-late
//!                              └─dead letters (decode errors) ────────────────────────────► pitwall-dlq
//!  (--pipelines predictions: sliding windows ─► ONNX pace model ─► f1-predictions)
//!  probe after all sinks ──► source commits offsets whose records' outputs are delivered
//! ```

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use differential_dataflow::input::InputSession;
use pitwall_connectors::kafka::group::Lease;
use pitwall_connectors::kafka::sink::{publish, publish_rejects, KafkaProducer, RejectSinks, Route, SinkHandle};
use pitwall_connectors::kafka::source::{follow_key_holds, kafka_source, split_events, Decoded, SourceHandle, SplitEvents};
use pitwall_connectors::onnx::tabular::WindowModel;
use pitwall_dataflows::decode::{decode_telemetry, DecodeError, DecodePolicy};
use pitwall_dataflows::infer::InferStats;
use pitwall_dataflows::keyed::{KeyedOptions, StateGauge};
use pitwall_dataflows::live::feed;
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::predict::{predict_windows, Prediction};
use pitwall_dataflows::quality::{sample_flags, QualityFlag};
use pitwall_dataflows::queries::{live_queries, publish_results, Query, QueryHub};
use pitwall_dataflows::records::{Alert, EventTime, Sample, SourcePosition, WindowResult};
use pitwall_dataflows::restart::drop_delivered;
use prometheus::{Histogram, IntCounter};
use timely::dataflow::operators::core::Filter;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::dataflow::Stream;

use super::metrics::JobMetrics;
use super::models::{batching, predictions_source};
use super::{count_and_show, source_config, telemetry_reader_kafka, JobConfig, Pipeline, ProcessShared};

/// How far (ms of event time) behind the input a driver's anomaly rules may hold the probe: a
/// condition remembered longer (a stuck brake flag with throttle for minutes) is announced
/// instead, and only its driver's replay point stays back (`follow_key_holds`). Ten seconds is
/// past every rule's own lookback (1-2 s), so in a normal race nothing is ever released.
const RULE_HOLD_RELEASE_MS: u64 = 10_000;

/// One worker's telemetry dataflow (and predictions), built.
pub(crate) struct TelemetryParts {
    pub(crate) probe: ProbeHandle<u64>,
    pub(crate) source: SourceHandle,
    /// Per keyed operator, the state it holds (for the metrics).
    pub(crate) state: Vec<(&'static str, StateGauge)>,
    /// The samples waiting for the watermark (`in_time_order`), for the report's `held_peak`.
    pub(crate) ordering: StateGauge,
    /// Exact duplicate samples dropped (counted as the `duplicate_sample` quality flag).
    pub(crate) duplicates: Rc<Cell<u64>>,
    pub(crate) sinks: TelemetrySinks,
    /// The predictions model's counts, if predictions run.
    pub(crate) inference: Option<InferStats>,
    /// The live queries' input: worker 0 inserts, every worker advances it with `query_clock`.
    pub(crate) queries: Option<InputSession<u64, (u64, Query), isize>>,
    /// The sliding windows' frontier.
    pub(crate) query_clock: ProbeHandle<u64>,
    /// Outputs of a replay that the crashed run had delivered, dropped before the sinks.
    pub(crate) already_delivered: Vec<Rc<Cell<u64>>>,
}

/// The telemetry job's sinks, by name.
pub(crate) struct TelemetrySinks {
    pub(crate) alerts: SinkHandle,
    pub(crate) windows: SinkHandle,
    pub(crate) dead_letters: SinkHandle,
    pub(crate) late: SinkHandle,
    /// With `--pipelines predictions`.
    pub(crate) predictions: Option<SinkHandle>,
}

impl TelemetrySinks {
    /// Every sink with its metrics label.
    pub(crate) fn labelled(&self) -> Vec<(&'static str, SinkHandle)> {
        let mut all = vec![
            ("alerts", self.alerts.clone()),
            ("windows", self.windows.clone()),
            ("dead_letters", self.dead_letters.clone()),
            ("late", self.late.clone()),
        ];
        all.extend(self.predictions.iter().map(|p| ("predictions", p.clone())));
        all
    }
}

/// The telemetry decoder the source runs: bytes -> validated sample, counting the samples that
/// raise each data-quality flag.
fn telemetry_decoder(
    policy: DecodePolicy,
    metrics: &JobMetrics,
) -> impl FnMut(SourcePosition, Option<&[u8]>, &[u8]) -> Decoded<Sample, DecodeError> + 'static {
    let flagged: Vec<IntCounter> = QualityFlag::ALL.iter().map(|f| metrics.quality_flags.with_label_values(&[f.name()])).collect();
    move |at, key, payload| {
        let record = decode_telemetry(key, payload, &policy)?;
        for flag in sample_flags(&record) {
            // ALL lists the flags in declaration order.
            flagged[flag as usize].inc();
        }
        Ok((record.session_time_ms, Sample { at, record }))
    }
}

/// Observes each alert's latency from its record's production to now on `histogram`.
fn observe_alert_latency<'s>(alerts: Stream<'s, EventTime, Vec<Alert>>, histogram: Histogram) -> Stream<'s, EventTime, Vec<Alert>> {
    feed(alerts, move |batch: &[Alert]| {
        let now = pitwall_dataflows::records::now_ms();
        for produced in batch.iter().filter_map(|a| a.produced_at_ms) {
            histogram.observe(now.saturating_sub(produced) as f64 / 1_000.0);
        }
    })
}

pub(crate) fn build_telemetry(
    worker: &mut timely::worker::Worker,
    config: &JobConfig,
    producer: &KafkaProducer,
    shared: &ProcessShared<'_>,
    shutdown: Arc<AtomicBool>,
    lease: Option<Arc<Lease>>,
) -> Result<TelemetryParts> {
    let (metrics, live, queries_possible) = (shared.metrics, shared.live.clone(), shared.queries_possible);
    let args = &config.dataflow;
    let models = &config.models;
    let policy = DecodePolicy {
        max_record_bytes: args.max_record_bytes,
        known_drivers: args.drivers.as_ref().map(|d| d.iter().cloned().collect::<BTreeSet<_>>()),
    };
    let telemetry = TelemetryConfig {
        sliding: args.sliding_windows()?,
        keyed: KeyedOptions {
            key_ttl_ms: (args.key_ttl_ms > 0).then_some(args.key_ttl_ms),
            time_granularity_ms: args.time_granularity_ms,
            ..Default::default()
        },
        alerts_after_watermark: args.alerts_after_watermark,
        duplicate_horizon_ms: args.allowed_lateness_ms,
        // The source keeps such a driver's replay point (`follow_key_holds` below).
        release_rule_holds_after_ms: Some(RULE_HOLD_RELEASE_MS),
        ..Default::default()
    };
    let predictor =
        if config.runs(Pipeline::Predictions) { Some(WindowModel::load(&predictions_source(models), models.intra_threads)?) } else { None };
    let mut source = source_config(config, &args.telemetry_topic, &args.group, args.allowed_lateness_ms);
    source.kafka = telemetry_reader_kafka(config);
    source.max_batch = args.max_poll_batch.max(1);
    source.max_read_ahead_ms = (args.max_read_ahead_ms > 0).then_some(args.max_read_ahead_ms);
    source.max_event_time_jump_ms = (args.max_event_time_jump_ms > 0).then_some(args.max_event_time_jump_ms);
    source.metrics = Some(metrics.source.clone());
    // A lease's dataflow starts from nothing: its own board, not an older generation's.
    source.board = Some(lease.as_ref().map_or_else(|| shared.boards.telemetry.clone(), |l| l.board.clone()));
    source.lease = lease;

    let probe = ProbeHandle::new();
    let mut inference = None;
    let first_worker = worker.index() == 0;
    let parts = worker.dataflow::<u64, _, _>(|scope| -> Result<_> {
        let (events, handle) = kafka_source(scope, source, telemetry_decoder(policy, metrics), probe.clone(), shutdown)?;
        let SplitEvents { records: samples, late, dead } = split_events(events);
        let counter = |operator: &str, direction: &str| metrics.operator_records.with_label_values(&[operator, direction]);
        let samples = count_and_show(samples, counter("telemetry_dataflow", "in"), live.clone(), |l, b| l.push_samples(b));
        let mut outputs = telemetry_dataflow(samples, &telemetry);
        // Live queries over the windows, on every worker of every process (the arrangement is
        // partitioned by a shard of the driver); results are gathered at worker 0, whose process
        // serves them. Queries read the sliding windows, and their input follows the sliding
        // windows' frontier (lap windows hold theirs at the lap's start until the lap ends).
        // Where no query can ever come, the query dataflow is still built (one shape everywhere)
        // but fed nothing: arranging every window result for no reader was ~4% of the job's
        // instructions.
        let (query_clock, sliding) = outputs.sliding.clone().probe();
        let live_query = live_queries(sliding.filter(move |_| queries_possible), outputs.alerts.clone().filter(move |_| queries_possible));
        publish_results(live_query.results, shared.query_hub.clone().unwrap_or_default());
        outputs.alerts = observe_alert_latency(outputs.alerts, metrics.alert_latency.clone());
        outputs.windows = count_and_show(outputs.windows, counter("windows", "out"), live.clone(), |l, b| l.push_windows(b));
        outputs.alerts = count_and_show(outputs.alerts, counter("anomaly_rules", "out"), live.clone(), |l, b| l.push_alerts(b));
        // After a crash: what the crashed run had delivered is not sent again (the marks come
        // from the companion group, per partition, read by the source at start; `dataflows/src/restart.rs`).
        let marks = handle.delivered_before();
        if first_worker && marks.iter().any(Option::is_some) {
            tracing::info!(?marks, "resuming after an unclean stop: outputs before these times (per partition) were delivered and are not re-sent");
        }
        let alert_mark = handle.marks_by_key();
        let window_mark = alert_mark.clone();
        let (alerts, dropped_alerts) = drop_delivered(outputs.alerts, "AlertsDelivered", move |a: &Alert| alert_mark(&a.driver), |_| {});
        let (windows, dropped_windows) = drop_delivered(outputs.windows, "WindowsDelivered", move |w: &WindowResult| window_mark(&w.driver), |_| {});
        // A condition the rules have remembered for longer than RULE_HOLD_RELEASE_MS stops
        // holding the probe (and every partition's commits and marks); its driver's replay
        // point is kept by the source's commits instead.
        follow_key_holds(outputs.rule_holds, &handle).probe_with(&probe);
        let alerts_topic = args.alerts_topic.clone();
        let (alerts_done, alerts_sink) = publish(alerts, producer, "AlertSink", move |a: &Alert| Route {
            topic: alerts_topic.clone(),
            key: Some(a.driver.clone()),
            partition: Some(a.severity.partition()),
            origin: None,
        });
        alerts_done.probe_with(&probe);
        let predictions = predictor.map(|model| {
            let card = model.card.clone();
            let (predictions, stats) = predict_windows(windows.clone(), model, card, batching(models));
            inference = Some(stats);
            let topic = models.predictions_topic.clone();
            let (done, sink) = publish(predictions, producer, "PredictionSink", move |p: &Prediction| Route::keyed(&topic, &p.model_type));
            done.probe_with(&probe);
            sink
        });
        let windows_topic = args.windows_topic.clone();
        let (windows_done, windows_sink) = publish(windows, producer, "WindowSink", move |w: &WindowResult| Route::keyed(&windows_topic, &w.driver));
        windows_done.probe_with(&probe);
        let RejectSinks { dead: (dead_done, dead_letters), late: (late_done, late) } =
            publish_rejects(dead, late, producer, &args.dlq_topic, &args.late_topic, "");
        late_done.probe_with(&probe);
        dead_done.probe_with(&probe);
        Ok(TelemetryParts {
            probe: probe.clone(),
            source: handle,
            state: outputs.state,
            ordering: outputs.ordering,
            duplicates: outputs.duplicates,
            sinks: TelemetrySinks { alerts: alerts_sink, windows: windows_sink, dead_letters, late, predictions },
            inference: None,
            queries: Some(live_query.input),
            query_clock,
            already_delivered: vec![dropped_alerts, dropped_windows],
        })
    })?;
    Ok(TelemetryParts { inference, ..parts })
}

/// Takes new and removed queries in (worker 0) and moves the query input along with the job's
/// progress (every worker), closing it once the telemetry input has ended.
pub(crate) fn feed_queries(
    queries: &mut Option<InputSession<u64, (u64, Query), isize>>,
    probe: &ProbeHandle<u64>,
    hub: Option<&QueryHub>,
    takes_commands: bool,
) {
    let Some(input) = queries.as_mut() else { return };
    if takes_commands {
        for command in hub.map(QueryHub::take_pending).unwrap_or_default() {
            command.apply_to(input);
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
