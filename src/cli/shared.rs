//! The flag groups several commands share: Kafka, the dataflow, models, video, storage, the
//! bridge and timely's cluster flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pitwall_connectors::kafka::{group, source};
use pitwall_dataflows::infer::{DEFAULT_INFER_BATCH, DEFAULT_INFER_WAIT_MS};
use pitwall_dataflows::keyed::DEFAULT_TIME_GRANULARITY_MS;
use pitwall_dataflows::live::DEFAULT_POINTS_PER_DRIVER;
use pitwall_dataflows::video::outputs::FireOutputs;
use pitwall_dataflows::windows::SlidingWindows;

use super::parsed_defaults;
use crate::topics;

/// How a job's instances share its input partitions (`--assignment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Assignment {
    /// `group` for one process, `static` for a multi-process cluster.
    Auto,
    /// Kafka's consumer-group protocol: instances join and leave, partitions move.
    Group,
    /// Fixed: partition p on worker p % (workers x processes) of this cluster.
    Static,
}

impl Assignment {
    /// Whether a job of `processes` processes joins the group.
    pub fn joins_group(self, processes: usize) -> bool {
        match self {
            Assignment::Auto => processes <= 1,
            Assignment::Group => true,
            Assignment::Static => false,
        }
    }
}

/// Kafka connection flags shared by every command that talks to a broker.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, e.g. 127.0.0.1:9092 (or the environment's PITWALL_BROKERS, else
    /// KAFKA_BOOTSTRAP_SERVERS, the name the seed systems use).
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: String,
    #[command(flatten)]
    pub client: ClientProperties,
}

impl KafkaArgs {
    pub fn config(&self) -> pitwall_connectors::kafka::KafkaConfig {
        self.client.config(self.brokers.clone())
    }
}

/// What the Kafka transport settings favour (`--latency-profile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyProfileArg {
    /// pitwall's defaults: producers linger 5 ms to fill batches, fetches wait up to 10 ms, an
    /// idle source polls every 2 ms.
    #[default]
    Throughput,
    /// Send at once (linger.ms=0), fetches wait at most 1 ms, idle sources poll every 250 µs:
    /// lower ingest-to-alert latency on a broker that is cheap per request, higher on one that
    /// is not (README, "Latency profiles").
    Low,
}

/// librdkafka properties passed through to every Kafka client, as with kcat.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientProperties {
    /// Extra librdkafka property `key=value` (repeatable), e.g. `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = pitwall_connectors::kafka::config::parse_property)]
    pub property: Vec<(String, String)>,
    /// Transport settings for every Kafka client of this command (producers, consumers, the
    /// job's sources and sinks); -X properties still win over them.
    #[arg(long, value_enum, default_value_t = LatencyProfileArg::Throughput)]
    pub latency_profile: LatencyProfileArg,
}

impl ClientProperties {
    /// A client configuration for `brokers` with these properties.
    pub fn config(&self, brokers: String) -> pitwall_connectors::kafka::KafkaConfig {
        let profile = match self.latency_profile {
            LatencyProfileArg::Throughput => pitwall_connectors::kafka::config::LatencyProfile::Throughput,
            LatencyProfileArg::Low => pitwall_connectors::kafka::config::LatencyProfile::Low,
        };
        pitwall_connectors::kafka::KafkaConfig { brokers, properties: self.property.clone(), profile }
    }
}

/// Dataflow settings shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct DataflowArgs {
    /// Consumer group whose committed offsets the source resumes from and commits to.
    #[arg(long, default_value = source::DEFAULT_GROUP)]
    pub group: String,
    /// How instances share the input topics' partitions. `group`: every `pitwall run` with the
    /// same --group (telemetry) / --video-group (video) shares them through Kafka's consumer-group
    /// protocol, and they move as instances join, leave or die (one process per instance).
    /// `static`: this cluster's workers own partition p on worker p % (workers x processes),
    /// fixed, and refuse to start while the group has members. `auto` (the default): group for
    /// one process, static for a multi-process cluster (-n > 1).
    #[arg(long, value_enum, default_value_t = Assignment::Auto)]
    pub assignment: Assignment,
    /// Group membership: how long (ms) the broker waits for a silent instance (killed, cut off)
    /// before its partitions go to the others; heartbeats go every third of it.
    #[arg(long, default_value_t = group::DEFAULT_SESSION_TIMEOUT_MS)]
    pub session_timeout_ms: u64,
    /// Topic to read telemetry from.
    #[arg(long, default_value = topics::TELEMETRY)]
    pub telemetry_topic: String,
    /// Topic alerts are published to (needs 3 partitions: high, medium, low).
    #[arg(long, default_value = topics::ALERTS)]
    pub alerts_topic: String,
    /// Topic window results are published to.
    #[arg(long, default_value = topics::WINDOWS)]
    pub windows_topic: String,
    /// Dead-letter topic for records that cannot be used (with the reason).
    #[arg(long, default_value = topics::DLQ)]
    pub dlq_topic: String,
    /// Sliding window length in milliseconds of event time.
    #[arg(long, default_value_t = SlidingWindows::DEFAULT_LENGTH_MS)]
    pub window_length_ms: u64,
    /// Sliding window slide in milliseconds of event time.
    #[arg(long, default_value_t = SlidingWindows::DEFAULT_SLIDE_MS)]
    pub window_slide_ms: u64,
    /// Topic for records that arrive after the watermark passed their event time (never dropped).
    #[arg(long, default_value = topics::LATE)]
    pub late_topic: String,
    /// How far (ms of event time) a record may trail its partition's newest record and still count.
    #[arg(long, visible_alias = "allowed-lateness", default_value_t = source::DEFAULT_ALLOWED_LATENESS_MS)]
    pub allowed_lateness_ms: u64,
    /// A partition the broker reports caught up, then silent this long (ms), stops holding the watermark back.
    #[arg(long, default_value_t = source::DEFAULT_EOF_GRACE_MS)]
    pub eof_idle_ms: u64,
    /// Fallback: a partition silent this long (ms) stops holding the watermark back, whatever the broker says.
    #[arg(long, default_value_t = source::DEFAULT_IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// Drop a driver's state (windows, rule memory) once it has been silent this long in event
    /// time, after its last windows close; 0 keeps it until the input ends.
    #[arg(long, visible_alias = "key-ttl", default_value_t = 300_000)]
    pub key_ttl_ms: u64,
    /// Window results and alerts are timestamped (in timely) at their first sample's event time
    /// rounded down to a multiple of this (ms; 1 is exact). Results themselves do not change:
    /// outputs of one granule share a timestamp, which saves a message and a progress update per
    /// distinct millisecond; offsets are committed up to this much event time later. Keep it the
    /// same across a crash and its restart (the restart compares output times with the marks
    /// the crashed run committed).
    #[arg(long, default_value_t = DEFAULT_TIME_GRANULARITY_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub time_granularity_ms: u64,
    /// How often (ms of wall time) each source commits the offsets and delivered-before marks of
    /// what it has seen delivered: shorter means less to replay after a crash, more commit traffic.
    #[arg(long, default_value_t = source::DEFAULT_COMMIT_INTERVAL_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_interval_ms: u64,
    /// Most messages one source activation reads; results do not depend on it. Larger batches
    /// mean fewer dataflow steps (each pays timely's progress bookkeeping) when a backlog is
    /// read: 8,192 was ~8% faster than 4,096 at `-w 2`; 16,384 and more gained nothing.
    #[arg(long, default_value_t = source::DEFAULT_MAX_BATCH)]
    pub max_poll_batch: usize,
    /// Event time (ms) a telemetry partition may be read ahead of the slowest one before its
    /// reading is paused; 0 never pauses. Replaying a backlog, partitions with fewer drivers cross
    /// the race faster, and what they read ahead waits in memory for the watermark; paused, it
    /// waits in Kafka. Results do not depend on it.
    #[arg(long, default_value_t = source::DEFAULT_MAX_READ_AHEAD_MS)]
    pub max_read_ahead_ms: u64,
    /// A telemetry record whose event time is more than this many ms ahead of its partition's
    /// newest record goes to the DLQ as implausible (one record at a far-future time would
    /// otherwise make every later record of its partition late); 0 accepts any jump.
    #[arg(long, default_value_t = source::DEFAULT_MAX_EVENT_TIME_JUMP_MS)]
    pub max_event_time_jump_ms: u64,
    /// Accept only these driver ids (comma-separated); others go to the DLQ as unknown.
    #[arg(long, value_delimiter = ',')]
    pub drivers: Option<Vec<String>>,
    /// Messages larger than this many bytes go to the DLQ.
    #[arg(long, default_value_t = pitwall_dataflows::decode::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Run the anomaly rules in event-time order after the watermark instead of on arrival in
    /// each driver's partition order: needed only when a driver's records are spread over
    /// several partitions (not keyed by driver); every alert then waits for the allowed lateness.
    #[arg(long)]
    pub alerts_after_watermark: bool,
}

impl DataflowArgs {
    /// The sliding window shape these flags ask for, or why it cannot be computed.
    pub fn sliding_windows(&self) -> anyhow::Result<SlidingWindows> {
        SlidingWindows::try_new(self.window_length_ms, self.window_slide_ms).context("--window-length-ms / --window-slide-ms")
    }
}

impl Default for DataflowArgs {
    /// The flags' defaults.
    fn default() -> Self {
        parsed_defaults()
    }
}

/// Which models run and how they are fed, shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The ONNX Runtime shared library (default: ORT_DYLIB_PATH, else the `onnxruntime` Python
    /// wheel's, found through python3).
    #[arg(long, value_name = "PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Fire model (.onnx); default: the built-in models/fire_colour.onnx.
    #[arg(long, value_name = "PATH")]
    pub fire_model: Option<PathBuf>,
    /// Output convention of --fire-model: `heatmap` (outputs `heatmap` and `score`) or `yolo`
    /// (one output [N, 4 + classes, boxes]; NMS in pitwall).
    #[arg(long, default_value = "heatmap", value_parser = fire_outputs())]
    pub fire_model_kind: FireOutputs,
    /// Class names of a YOLO model, by index; the first is the fire class.
    #[arg(long, value_delimiter = ',', default_value = "fire,smoke")]
    pub fire_classes: Vec<String>,
    /// How a YOLO model's class scores are read: `auto` (logits when a frame has scores below
    /// -0.05, else probabilities with overshoot above 1.0 clamped, as quantized exports emit),
    /// `probability`, `logit`, or `scale=MAX` for scores on 0..MAX (e.g. scale=255).
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<pitwall_dataflows::video::detect::ScoreScale>())]
    pub fire_scores: pitwall_dataflows::video::detect::ScoreScale,
    /// Model input size WIDTHxHEIGHT frames are resized to (a model with a fixed size overrides it).
    #[arg(long, default_value = "128x128", value_parser = parse_size)]
    pub model_input: (u32, u32),
    /// A frame whose score is at least this is a fire frame.
    #[arg(long, default_value_t = 0.5)]
    pub fire_threshold: f32,
    /// Most items (frames, windows) per model run.
    #[arg(long, default_value_t = DEFAULT_INFER_BATCH)]
    pub infer_batch: usize,
    /// Longest an item waits for its batch to fill, in ms.
    #[arg(long, default_value_t = DEFAULT_INFER_WAIT_MS)]
    pub infer_wait_ms: u64,
    /// ONNX Runtime intra-op threads per model run (0: the runtime's default).
    #[arg(long, default_value_t = 1)]
    pub intra_threads: usize,
    /// Telemetry model over window features (.onnx); default: the built-in models/pace_next5s.onnx.
    #[arg(long, value_name = "PATH")]
    pub predictions_model: Option<PathBuf>,
    /// Topic predictions are published to (keyed by model type).
    #[arg(long, default_value = topics::PREDICTIONS)]
    pub predictions_topic: String,
}

impl Default for ModelArgs {
    /// The flags' defaults.
    fn default() -> Self {
        parsed_defaults()
    }
}

/// The video pipeline's topics, consumer group and timing, shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct VideoArgs {
    /// Topic video frames are read from.
    #[arg(long, default_value = topics::VIDEO_FRAMES)]
    pub video_topic: String,
    /// Topic per-frame detections are published to (keyed by video id).
    #[arg(long, default_value = topics::FIRE_DETECTIONS)]
    pub detections_topic: String,
    /// Topic completed videos are announced on (keyed by video id).
    #[arg(long, default_value = topics::VIDEO_COMPLETIONS)]
    pub completions_topic: String,
    /// Consumer group of the video source.
    #[arg(long, default_value = topics::VIDEO_GROUP)]
    pub video_group: String,
    /// A video frame more than this far (ms, by its production time) behind its partition's
    /// newest frame is late (to the late topic); also how long the video source's commits trail.
    #[arg(long, default_value_t = 60_000)]
    pub video_lateness_ms: u64,
    /// A video with no frame for this many seconds is finished without its end marker.
    #[arg(long, default_value_t = 300)]
    pub video_idle_s: u64,
}

impl Default for VideoArgs {
    /// The flags' defaults.
    fn default() -> Self {
        parsed_defaults()
    }
}

/// Where overlayed videos are encoded and stored, shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// Where videos are encoded before they are stored (default: a folder under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Without an S3 bucket, overlayed videos are stored under this folder with the S3 key layout.
    #[arg(long, value_name = "DIR", default_value = "pitwall-videos")]
    pub video_out: PathBuf,
    /// S3 bucket for overlayed videos (`videos/<id>_with_heatmaps.mp4`).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint, for S3-compatible servers (then path-style addressing is used).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id (prefer the environment variable).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    /// S3 secret key (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Files at least this many MiB go to S3 as multipart uploads.
    #[arg(long, default_value_t = 16)]
    pub s3_multipart_mib: u64,
    /// An upload still failing after this many seconds (S3 down, 5xx, timeouts) makes `/health`
    /// report degraded. It keeps being retried: a video is never given up on, and its frames
    /// stay uncommitted until it is stored. Uploads S3 refuses for good (403 credentials, 404 no
    /// such bucket) stop the video pipeline with the error instead.
    #[arg(long, value_name = "SECONDS", default_value_t = pitwall_connectors::store::DEFAULT_DEGRADED_AFTER_S)]
    pub s3_degraded_after_s: u64,
    /// Delete a video's local file once it is stored in S3 (`false`: keep it under `--video-out`
    /// with the key layout, like the seed's `S3_DELETE_LOCAL_AFTER_UPLOAD=false`).
    #[arg(long, value_name = "BOOL", env = "S3_DELETE_LOCAL_AFTER_UPLOAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_delete_local_after_upload: bool,
    /// Each completion carries a presigned GET link to the stored video, valid this many
    /// seconds (at most 604800, 7 days: SigV4's limit). S3 only.
    #[arg(long, value_name = "SECONDS", env = "S3_PRESIGN_SECS")]
    pub s3_presign_secs: Option<u64>,
}

impl Default for StorageArgs {
    /// The flags' defaults, with the S3 settings left empty whatever the environment says.
    fn default() -> Self {
        StorageArgs {
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key: None,
            s3_secret_key: None,
            s3_delete_local_after_upload: true,
            s3_presign_secs: None,
            ..parsed_defaults()
        }
    }
}

/// A fire model output convention by its name, the names listed in `--help` from the enum.
fn fire_outputs() -> impl clap::builder::TypedValueParser<Value = FireOutputs> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(FireOutputs::ALL.map(FireOutputs::name)).try_map(|name| name.parse::<FireOutputs>())
}

pub(crate) fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let parse = |part: &str| part.trim().parse::<u32>().ok().filter(|n| (8..=4096).contains(n));
    match text.split_once('x').map(|(w, h)| (parse(w), parse(h))) {
        Some((Some(w), Some(h))) => Ok((w, h)),
        _ => Err(format!("expected WIDTHxHEIGHT, each 8..=4096, e.g. 128x128, got {text:?}")),
    }
}

/// The HTTP bridge's flags, shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct BridgeArgs {
    /// Serve GET /metrics (Prometheus) and GET /health on this address; `--bridge` alone means
    /// 127.0.0.1:8080 (loopback). A non-loopback address is refused without --bridge-token
    /// (or an explicit --bridge-insecure).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    pub bridge: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer TOKEN` on every bridge endpoint except /health. Prefer the
    /// environment variable: command lines are visible to other local users.
    #[arg(long, value_name = "TOKEN", env = "PITWALL_BRIDGE_TOKEN", hide_env_values = true)]
    pub bridge_token: Option<pitwall_connectors::bridge::Token>,
    /// Allow cross-origin browser calls from these origins (comma-separated, e.g.
    /// `https://grafana.example.com`; `*` for any): for Grafana's direct (browser) access mode.
    /// Off by default: no CORS headers are sent.
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub bridge_cors_origin: Vec<String>,
    /// Samples and window results the bridge keeps per driver for Grafana (each); about 32
    /// bytes a point, so the default is ~77 MB for 20 drivers.
    #[arg(long, default_value_t = DEFAULT_POINTS_PER_DRIVER)]
    pub bridge_points: usize,
    /// Serve a non-loopback --bridge address without a token: anyone who can reach it reads the
    /// live data and registers queries. Only on a network you trust.
    #[arg(long)]
    pub bridge_insecure: bool,
    /// The time Grafana and the dashboard chart telemetry at: `wall`, when each sample was
    /// produced (a live replay shows up now, in "last 15 minutes"), or `session`, the session's
    /// own `Date` (a replayed 2023 race at its 2023 dates). Either way the session time stays in
    /// every record and is the series `<driver>:session_time`.
    #[arg(long, value_enum, default_value_t = BridgeTime::Wall)]
    pub bridge_time: BridgeTime,
}

/// See [`BridgeArgs::bridge_time`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BridgeTime {
    /// When each sample was produced (samples without a production time: as `session`).
    Wall,
    /// The session's `Date`.
    Session,
}

impl BridgeTime {
    pub fn clock(self) -> pitwall_dataflows::live::LiveClock {
        match self {
            BridgeTime::Wall => pitwall_dataflows::live::LiveClock::Wall,
            BridgeTime::Session => pitwall_dataflows::live::LiveClock::Session,
        }
    }
}

impl BridgeArgs {
    /// Refuses to serve the bridge beyond this machine without a token, unless asked to.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        match self.bridge {
            Some(addr) if !addr.ip().is_loopback() && self.bridge_token.is_none() && !self.bridge_insecure => anyhow::bail!(
                "--bridge {addr} is reachable from other machines: set --bridge-token (or PITWALL_BRIDGE_TOKEN), or pass --bridge-insecure to serve it without one"
            ),
            _ => Ok(()),
        }
    }
}

impl Default for BridgeArgs {
    /// No bridge and no token whatever the environment says (not parsed: a malformed
    /// `PITWALL_BRIDGE_TOKEN` must not make a default fail); the flags' defaults otherwise.
    fn default() -> Self {
        BridgeArgs {
            bridge: None,
            bridge_token: None,
            bridge_cors_origin: Vec::new(),
            bridge_points: DEFAULT_POINTS_PER_DRIVER,
            bridge_insecure: false,
            bridge_time: BridgeTime::Wall,
        }
    }
}

/// Timely's cluster flags, with their timely meanings.
#[derive(Args, Debug, Clone)]
pub struct TimelyArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the timely cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0..processes.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// File with one `host:port` line per process (default: localhost:2101, 2102, ...).
    #[arg(short = 'h', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
}
