//! The job: per worker, the telemetry dataflow (`telemetry.rs`) and, with `--pipelines video`,
//! the video dataflow (`video.rs`) beside it, each a Kafka source -> dataflow -> sinks -> probe
//! -> commits; per process, the bridge, the metrics and the report.
//!
//! | file | what it owns |
//! | --- | --- |
//! | `mod.rs` | `JobConfig`, `run_job` (one process: preflight, bridge, workers, report) and the worker loop |
//! | `cluster.rs` | timely's cluster config from `-w -n -p -h`, and the stop (exit status 3) when a peer process is lost |
//! | `preflight.rs` | checks before any worker starts: flags, models, topics |
//! | `models.rs` | which models and store the flags choose, and how they are fed |
//! | `metrics.rs` | the process-wide Prometheus metrics, and a worker's refresh of them |
//! | `report.rs` | the per-worker and per-process report |
//! | `telemetry.rs` | one worker's telemetry dataflow, wired, with its named sinks and taps |
//! | `video.rs` | one worker's video dataflow, wired, with its named sinks |
//! | `worker.rs` | the worker loop: dataflows built once or per group lease, hand-overs, metrics, the report |

mod cluster;
mod metrics;
pub mod models;
mod preflight;
mod report;
mod telemetry;
pub mod video;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;
use pitwall_connectors::bridge;
use pitwall_connectors::kafka::config::{instance_id, TELEMETRY_PARTITION_PREFETCH_KBYTES};
use pitwall_connectors::kafka::group::{group_members, static_group, GroupConfig, GroupMember, StaticAnnouncement};
use pitwall_connectors::kafka::health::SourceHealth;
use pitwall_connectors::kafka::source::{SourceConfig, TopicBoards};
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_connectors::store::ObjectStore;
use pitwall_dataflows::live::{feed, LiveConfig, LiveStore};
use pitwall_dataflows::quality::QualityFlag;
use pitwall_dataflows::queries::QueryHub;
use pitwall_dataflows::records::EventTime;
use prometheus::{IntCounter, Registry};
use timely::dataflow::Stream;

pub use self::cluster::{timely_config, EXIT_LOST_PEER};
use self::metrics::JobMetrics;
use self::models::open_store;
pub use self::preflight::{check_models, preflight};
pub use self::report::JobReport;
use self::report::WorkerReport;
use self::worker::{run_worker, Memberships, SLOT_TELEMETRY, SLOT_VIDEO};
use crate::cli::{BridgeArgs, DataflowArgs, ModelArgs, StorageArgs, VideoArgs};

/// Which dataflows a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pipeline {
    /// `f1-telemetry` -> windows, alerts.
    Telemetry,
    /// Window results -> ONNX model -> `f1-predictions` (needs `telemetry`).
    Predictions,
    /// `video-frames` -> ONNX fire model -> `fire-detections`, overlayed videos -> storage,
    /// `video-completions`.
    Video,
}

/// Everything a worker needs to build the job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    pub kafka: KafkaConfig,
    pub dataflow: DataflowArgs,
    /// Which dataflows run.
    pub pipelines: Vec<Pipeline>,
    /// Which models run, and how they are fed.
    pub models: ModelArgs,
    /// The video pipeline's topics, group and timing.
    pub video: VideoArgs,
    /// Where overlayed videos are encoded and stored.
    pub storage: StorageArgs,
    pub exit_at_end: bool,
    /// Where to serve /metrics and /health, if anywhere.
    pub bridge: BridgeArgs,
}

impl JobConfig {
    /// The telemetry pipeline on `kafka` with every other setting at its flag's default (the S3
    /// settings and the bridge token empty whatever the environment says), running until
    /// stopped: what the examples start from.
    pub fn new(kafka: KafkaConfig) -> JobConfig {
        JobConfig {
            kafka,
            dataflow: DataflowArgs::default(),
            pipelines: vec![Pipeline::Telemetry],
            models: ModelArgs::default(),
            video: VideoArgs::default(),
            storage: StorageArgs::default(),
            exit_at_end: false,
            bridge: BridgeArgs::default(),
        }
    }

    pub fn runs(&self, pipeline: Pipeline) -> bool {
        self.pipelines.contains(&pipeline)
    }
}

/// A source of `topic` for `group`, read and committed as the job's flags say (idleness,
/// commit interval, exit-at-end); both pipelines' sources start here.
pub(crate) fn source_config(config: &JobConfig, topic: &str, group: &str, allowed_lateness_ms: u64) -> SourceConfig {
    let args = &config.dataflow;
    let mut source = SourceConfig::new(config.kafka.clone(), topic);
    source.group = group.to_string();
    source.allowed_lateness_ms = allowed_lateness_ms;
    source.idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    source.eof_grace = Duration::from_millis(args.eof_idle_ms);
    source.commit_interval = Duration::from_millis(args.commit_interval_ms);
    source.exit_at_end = config.exit_at_end;
    source
}

/// The Kafka settings of the telemetry pipeline's readers, static or group member: each
/// partition's queue prefetches at most 1 MiB (video frames keep librdkafka's share).
pub(crate) fn telemetry_reader_kafka(config: &JobConfig) -> KafkaConfig {
    config.kafka.clone().with_partition_prefetch(TELEMETRY_PARTITION_PREFETCH_KBYTES)
}

/// A tap: counts a stream's records on `counter` and hands each batch to the live view, if
/// there is one. Every process builds it whether or not it serves a bridge: timely needs one
/// dataflow shape across the cluster.
pub(crate) fn count_and_show<'s, D: Clone + 'static>(
    stream: Stream<'s, EventTime, Vec<D>>,
    counter: IntCounter,
    live: Option<LiveStore>,
    show: impl Fn(&LiveStore, &[D]) + 'static,
) -> Stream<'s, EventTime, Vec<D>> {
    feed(stream, move |batch: &[D]| {
        counter.inc_by(batch.len() as u64);
        if let Some(live) = &live {
            show(live, batch);
        }
    })
}

/// Runs the job on this process's workers until the input ends (`exit_at_end`) or `shutdown`.
pub fn run_job(config: JobConfig, timely: timely::Config, shutdown: Arc<AtomicBool>) -> Result<JobReport> {
    // Models first: they need no broker, and a missing library is the likelier mistake.
    let (video, predictions) = (config.runs(Pipeline::Video), config.runs(Pipeline::Predictions));
    check_models(&config.models, video, predictions)?;
    preflight(&config)?;
    let store = if video {
        let store = open_store(&config.storage)?;
        eprintln!("overlayed videos go to {}", store.describe());
        Some(store)
    } else {
        None
    };
    let started = Instant::now();
    let registry = Registry::new();
    // CPU seconds, resident and virtual memory, open and maximum fds, threads and start time
    // (`process_*`), from the Prometheus client's own collector (procfs).
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).context("registering the process metrics")?;
    let metrics = JobMetrics::register(&registry).context("registering metrics")?;
    let sources: Arc<Mutex<Vec<SourceHealth>>> = Arc::default();
    // One watermark board per source topic: workers with only idle partitions follow the others.
    let boards = TopicBoards::default();
    // The live view the bridge answers Grafana from, fed by the workers (only with a bridge).
    let live = config.bridge.bridge.map(|_| {
        LiveStore::new(LiveConfig {
            points_per_driver: config.bridge.bridge_points.max(1),
            clock: config.bridge.bridge_time.clock(),
            ..LiveConfig::default()
        })
    });
    // Worker 0 takes live queries in and gathers their results: its process's bridge serves them.
    let hosts_worker_zero = !matches!(timely.communication, timely::CommunicationConfig::Cluster { process, .. } if process != 0);
    let query_hub = (live.is_some() && hosts_worker_zero && config.runs(Pipeline::Telemetry)).then(QueryHub::default);
    let (members, announcements, memberships) = join_groups(&config, &timely.communication)?;
    if let Some(addr) = config.bridge.bridge {
        let watched = sources.clone();
        let groups = memberships.clone();
        let videos = store.clone();
        let model_failures = metrics.model_failures.clone();
        let health: bridge::HealthCheck = Arc::new(move || {
            let mut sources = watched.lock().expect("health list lock");
            // Sources of dataflows dropped at a hand-over are gone for good.
            sources.retain(|s| !s.stopped());
            let mut reasons: Vec<String> = sources.iter().flat_map(|s| s.partitions()).filter_map(|p| p.stalled).collect();
            if let Some(store) = &videos {
                reasons.extend(store.health_reasons());
                reasons.extend(store.fatal().map(|error| format!("the video pipeline stopped: {error}")));
            }
            reasons.extend(model_failures.health_reasons());
            for membership in groups.iter().flat_map(|g| g.telemetry.iter().chain(g.video.iter())) {
                if membership.stats().rebalancing {
                    reasons.push(format!("{}: partitions of `{}` are moving between instances", bridge::REBALANCING, membership.topic()));
                }
            }
            reasons
        });
        let access = bridge::Access { token: config.bridge.bridge_token.clone(), cors_origins: config.bridge.bridge_cors_origin.clone() };
        let bound = bridge::serve(addr, registry, health, access, live.clone(), query_hub.clone())?;
        eprintln!("bridge: http://{bound}/metrics, http://{bound}/health and Grafana's JSON datasource at http://{bound}/grafana");
    }
    let queries_possible = queries_possible(query_hub.as_ref(), &timely.communication);
    if let timely::CommunicationConfig::Cluster { process, addresses, .. } = &timely.communication {
        self::cluster::stop_on_lost_peer(*process, addresses.len());
    }
    let config = Arc::new(config);
    let quality_flags = metrics.quality_flags.clone();
    let videos_held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let guards = self::cluster::execute(timely, move |worker| -> Result<WorkerReport, String> {
        let shared = ProcessShared {
            store: store.clone(),
            live: live.clone(),
            query_hub: query_hub.clone(),
            boards: boards.clone(),
            metrics: &metrics,
            sources: &sources,
            queries_possible,
            memberships: memberships.clone(),
            videos_held: videos_held.clone(),
        };
        run_worker(worker, &config, shared, shutdown.clone()).map_err(|e| format!("{e:#}"))
    })?;
    let mut report = JobReport::default();
    let mut finished = None;
    let results = guards.join();
    // Every worker has committed what it read: the partitions can go to the other members.
    members.into_iter().for_each(GroupMember::leave);
    drop(announcements);
    for result in results {
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

/// Joins the consumer groups of the job's sources when it shares its partitions with other
/// instances (`--assignment`), one member per source topic for this process; with static
/// assignment, announces the job in each group's side group instead (see [`static_group`]).
/// Never two owners for one partition: neither kind starts beside the other, naming who is there.
fn join_groups(
    config: &JobConfig,
    communication: &timely::CommunicationConfig,
) -> Result<(Vec<GroupMember>, Vec<StaticAnnouncement>, Option<Memberships>)> {
    let (processes, workers) = match communication {
        timely::CommunicationConfig::Cluster { threads, addresses, .. } => (addresses.len(), *threads),
        timely::CommunicationConfig::Process(n) => (1, *n),
        _ => (1, 1),
    };
    let mut sources = vec![];
    if config.runs(Pipeline::Telemetry) {
        sources.push((config.dataflow.group.as_str(), config.dataflow.telemetry_topic.as_str()));
    }
    if config.runs(Pipeline::Video) {
        sources.push((config.video.video_group.as_str(), config.video.video_topic.as_str()));
    }
    let client_id = instance_id();
    if !config.dataflow.assignment.joins_group(processes) {
        let mut announcements = Vec::new();
        for (group, topic) in sources {
            refuse_beside(
                &config.kafka,
                group,
                group,
                "--assignment static would read partitions that members of consumer group `{group}` are reading: {members}. Stop them, or join them with --assignment group",
            )?;
            announcements.push(
                StaticAnnouncement::announce(&config.kafka, group, topic, &client_id)
                    .with_context(|| format!("announcing the static job in `{}`", static_group(group)))?,
            );
        }
        return Ok((Vec::new(), announcements, None));
    }
    if processes > 1 {
        anyhow::bail!(
            "--assignment group runs one process per instance (-n 1): start more instances with the same --group to scale out, or run this {processes}-process cluster with --assignment static"
        );
    }
    for (group, _) in &sources {
        refuse_beside(
            &config.kafka,
            group,
            &static_group(group),
            "--assignment group would share partitions of consumer group `{group}` that a job with static assignment reads: {members}. Stop it, or run this one with --assignment static",
        )?;
    }
    let mut memberships = Memberships::default();
    let mut members = Vec::new();
    let mut join = |topic: &str, group: &str, slot: usize| -> Result<Arc<pitwall_connectors::kafka::group::Membership>> {
        let kafka = if slot == SLOT_TELEMETRY { telemetry_reader_kafka(config) } else { config.kafka.clone() };
        let group_config = GroupConfig {
            kafka,
            topic: topic.to_string(),
            group: group.to_string(),
            workers,
            session_timeout_ms: config.dataflow.session_timeout_ms,
            client_id: client_id.clone(),
        };
        let member = GroupMember::join(&group_config, memberships.log.clone(), slot).with_context(|| format!("joining consumer group `{group}`"))?;
        let membership = member.membership().clone();
        members.push(member);
        Ok(membership)
    };
    let telemetry =
        if config.runs(Pipeline::Telemetry) { Some(join(&config.dataflow.telemetry_topic, &config.dataflow.group, SLOT_TELEMETRY)?) } else { None };
    let video = if config.runs(Pipeline::Video) { Some(join(&config.video.video_topic, &config.video.video_group, SLOT_VIDEO)?) } else { None };
    memberships.telemetry = telemetry;
    memberships.video = video;
    Ok((members, Vec::new(), Some(memberships)))
}

/// Fails with `message` (its `{group}` and `{members}` filled in) if `watched` has members. A
/// broker that cannot describe groups is a warning: the job starts unchecked.
fn refuse_beside(kafka: &KafkaConfig, group: &str, watched: &str, message: &str) -> Result<()> {
    let members = match group_members(kafka, watched) {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(%error, group = watched, "could not describe the consumer group: starting without checking it for members");
            return Ok(());
        }
    };
    if members.is_empty() {
        return Ok(());
    }
    let names: Vec<String> =
        members.iter().map(|m| format!("{} on {} ({})", m.client_id, if m.host.is_empty() { "?" } else { &m.host }, m.member_id)).collect();
    anyhow::bail!("{}", message.replace("{group}", group).replace("{members}", &names.join(", ")))
}

/// Whether a live query can ever reach this process's workers. Queries enter only through
/// worker 0's bridge (its query hub): one process without that can never get one, while a
/// process of a cluster cannot tell whether process 0 serves a bridge.
fn queries_possible(hub: Option<&QueryHub>, communication: &timely::CommunicationConfig) -> bool {
    hub.is_some() || matches!(communication, timely::CommunicationConfig::Cluster { .. })
}

/// What the workers of one process share.
pub(crate) struct ProcessShared<'a> {
    /// Where overlayed videos go (the video pipeline runs when it is set).
    store: Option<Arc<ObjectStore>>,
    /// The bridge's live view (with a bridge).
    live: Option<LiveStore>,
    /// Registered live queries and their results (with a bridge, in the process of worker 0).
    query_hub: Option<QueryHub>,
    /// Watermark boards of the telemetry and video sources.
    boards: TopicBoards,
    metrics: &'a JobMetrics,
    sources: &'a Mutex<Vec<SourceHealth>>,
    /// Whether a live query can ever reach this job (see `run_job`).
    queries_possible: bool,
    /// Group membership (`None`: static assignment).
    memberships: Option<Memberships>,
    /// Videos the workers of this process hold unfinished at the end of their input.
    videos_held: Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
mod tests {
    use super::queries_possible;
    use pitwall_dataflows::queries::QueryHub;
    use timely::CommunicationConfig;

    #[test]
    fn live_queries_are_fed_unless_one_process_has_no_query_bridge() {
        let hub = QueryHub::default();
        let cluster = |process| CommunicationConfig::Cluster { threads: 1, process, addresses: vec![], report: false, zerocopy: false };
        assert!(!queries_possible(None, &CommunicationConfig::Process(2)), "one process, no bridge: nobody can ask");
        assert!(!queries_possible(None, &CommunicationConfig::Thread), "a bridge without the query hub");
        assert!(queries_possible(Some(&hub), &CommunicationConfig::Process(2)), "worker 0's bridge takes queries");
        assert!(queries_possible(None, &cluster(1)), "another process may serve them");
        assert!(queries_possible(None, &cluster(0)), "process 0 without a bridge cannot tell the others");
    }
}
