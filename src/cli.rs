//! The command-line contract. Every flag is documented here; `pitwall --help` prints it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use pitwall_connectors::kafka::source::{SourceConfig, DEFAULT_MAX_BATCH, DEFAULT_MAX_READ_AHEAD_MS};
use pitwall_dataflows::keyed::DEFAULT_TIME_GRANULARITY_MS;
use pitwall_dataflows::windows::SlidingWindows;

use crate::topics;

#[derive(Parser, Debug)]
#[command(name = "pitwall", version, about = "Streaming dataflow engine for F1 telemetry (and video fire detection) on timely dataflow and Kafka", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate test data.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Manage pitwall's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Publish data into Kafka.
    #[command(subcommand)]
    Produce(ProduceCommand),
    /// Run the dataflows (`--pipelines`): telemetry windows and alerts, predictions, video fire detection.
    Run(Box<RunArgs>),
    /// Print the messages of a topic as JSON lines with partition, offset and key (like kcat).
    Tail(TailArgs),
    /// The main job with zero set-up: embedded broker, generated race, live alerts.
    Demo(Box<DemoArgs>),
    /// Measure throughput, latency and scaling (see `pitwall bench scaling --help`).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Kafka connection flags shared by every command that talks to a broker.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, e.g. 127.0.0.1:9092.
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: String,
    /// Extra librdkafka property `key=value` (repeatable), e.g. `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = pitwall_connectors::kafka::config::parse_property)]
    pub property: Vec<(String, String)>,
}

impl KafkaArgs {
    pub fn config(&self) -> pitwall_connectors::kafka::KafkaConfig {
        pitwall_connectors::kafka::KafkaConfig { brokers: self.brokers.clone(), properties: self.property.clone() }
    }
}

#[derive(Subcommand, Debug)]
pub enum GenCommand {
    /// Write one FastF1-schema telemetry file per driver plus `ground_truth.json`.
    Race(GenRaceArgs),
    /// Write a synthetic H.264 MP4 clip (a street scene, with or without flames) plus
    /// `FILE.truth.json` with the frame ranges that contain fire.
    Video(GenVideoArgs),
}

#[derive(Args, Debug)]
pub struct GenVideoArgs {
    /// Put flames in the middle 60% of the clip.
    #[arg(long, conflicts_with = "no_fire")]
    pub fire: bool,
    /// No flames (the default when neither flag is given is --fire).
    #[arg(long)]
    pub no_fire: bool,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Frame rate.
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 180)]
    pub height: u32,
    /// Random seed of the scene's texture and flames.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output file (.mp4).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Csv,
    Parquet,
}

#[derive(Args, Debug)]
pub struct GenRaceArgs {
    /// Number of drivers (the 2023 grid's codes, then D21, D22, ...).
    #[arg(long, default_value_t = 20)]
    pub drivers: usize,
    /// Laps per driver (~700 rows per lap per driver).
    #[arg(long, default_value_t = 2)]
    pub laps: u32,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// File format: pandas-style CSV or pyarrow-style Parquet.
    #[arg(long, value_enum, default_value_t = FileFormat::Csv)]
    pub format: FileFormat,
    /// Random seed; the same seed gives the same race.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not inject anomalies (ground_truth.json is then empty).
    #[arg(long)]
    pub no_anomalies: bool,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create every pitwall topic that does not exist yet (idempotent).
    Create(TopicsCreateArgs),
}

#[derive(Args, Debug)]
pub struct TopicsCreateArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Partitions of `f1-telemetry` (records are keyed by driver).
    #[arg(long, default_value_t = 4)]
    pub telemetry_partitions: i32,
    /// Partitions of `f1-alerts`: at least 3, one per severity (high=0, medium=1, low=2).
    #[arg(long, default_value_t = topics::ALERT_PARTITIONS)]
    pub alerts_partitions: i32,
    /// Partitions of `f1-windows` (window results keyed by driver).
    #[arg(long, default_value_t = 4)]
    pub windows_partitions: i32,
    /// Partitions of `f1-predictions` (keyed by model type).
    #[arg(long, default_value_t = 3)]
    pub predictions_partitions: i32,
    /// Partitions of `video-frames` (keyed by video id).
    #[arg(long, default_value_t = 6)]
    pub video_frames_partitions: i32,
    /// Partitions of `fire-detections`.
    #[arg(long, default_value_t = 6)]
    pub fire_detections_partitions: i32,
    /// Partitions of `video-completions`.
    #[arg(long, default_value_t = 3)]
    pub video_completions_partitions: i32,
    /// Partitions of the dead-letter topic `pitwall-dlq`.
    #[arg(long, default_value_t = 1)]
    pub dlq_partitions: i32,
    /// Partitions of `pitwall-late` (records behind the watermark).
    #[arg(long, default_value_t = 1)]
    pub late_partitions: i32,
    /// Replication factor of every topic.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
}

#[derive(Subcommand, Debug)]
pub enum ProduceCommand {
    /// Replay telemetry files into `f1-telemetry`, keyed by driver, in event-time order.
    Telemetry(ProduceTelemetryArgs),
    /// Decode a video file (anything FFmpeg reads) and publish its frames to `video-frames`,
    /// keyed by video id, in order, then an end-of-video marker.
    Video(ProduceVideoArgs),
}

#[derive(Args, Debug)]
pub struct ProduceVideoArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The video file.
    pub file: PathBuf,
    /// Video id: the message key, and the name of the overlayed video in S3 (default: the
    /// file name without extension).
    #[arg(long)]
    pub id: Option<String>,
    /// Publish at most this many frames per second of video (frames are dropped evenly).
    #[arg(long)]
    pub fps_limit: Option<f64>,
    /// Scale frames wider than this down (aspect kept). Frames travel as raw RGB, so this
    /// bounds the message size: 640 wide at 16:9 is 691,200 bytes.
    #[arg(long, default_value_t = 640)]
    pub max_width: u32,
    /// Pace frames at the video's frame rate instead of sending as fast as possible.
    #[arg(long)]
    pub realtime: bool,
    /// Topic to produce to.
    #[arg(long, default_value = topics::VIDEO_FRAMES)]
    pub topic: String,
    /// Do not show the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ProduceTelemetryArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Telemetry files (.csv, .parquet) or directories of them.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Replay speed: event time runs this many times faster than real time.
    #[arg(long, default_value_t = 1.0, conflicts_with_all = ["max_rate", "rate"])]
    pub speed: f64,
    /// Offer this many messages per second in all (the replay speed is derived from the data).
    #[arg(long, conflicts_with = "max_rate")]
    pub rate: Option<f64>,
    /// Send as fast as possible (no real-time pacing).
    #[arg(long)]
    pub max_rate: bool,
    /// Producer threads; each owns whole partitions (and so whole drivers).
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Topic to produce to.
    #[arg(long, default_value = topics::TELEMETRY)]
    pub topic: String,
    /// Driver of every row, for FastF1 exports without a `Driver` column.
    #[arg(long)]
    pub driver: Option<String>,
    /// For files without a `Driver` column: each file's driver is its name up to the first `_`
    /// or `.` (VER.csv, VER_car.parquet, VER_pos.csv). Produce a whole session in one command
    /// this way: records of one partition must come in event-time order, and drivers produced
    /// one after another into the same partition would make the later ones late.
    #[arg(long, conflicts_with = "driver")]
    pub driver_from_name: bool,
    /// Lap number of every row, for files without `LapNumber`.
    #[arg(long)]
    pub lap: Option<u32>,
    /// Do not show the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Dataflow settings shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct DataflowArgs {
    /// Consumer group whose committed offsets the source resumes from and commits to.
    #[arg(long, default_value = "pitwall")]
    pub group: String,
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
    #[arg(long, default_value_t = 5_000)]
    pub window_length_ms: u64,
    /// Sliding window slide in milliseconds of event time.
    #[arg(long, default_value_t = 1_000)]
    pub window_slide_ms: u64,
    /// Topic for records that arrive after the watermark passed their event time (never dropped).
    #[arg(long, default_value = topics::LATE)]
    pub late_topic: String,
    /// How far (ms of event time) a record may trail its partition's newest record and still count.
    #[arg(long, visible_alias = "allowed-lateness", default_value_t = 500)]
    pub allowed_lateness_ms: u64,
    /// A partition the broker reports caught up, then silent this long (ms), stops holding the watermark back.
    #[arg(long, default_value_t = 200)]
    pub eof_idle_ms: u64,
    /// Fallback: a partition silent this long (ms) stops holding the watermark back, whatever the broker says.
    #[arg(long, default_value_t = 3_000)]
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
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_interval_ms: u64,
    /// Most messages one source activation reads; results do not depend on it. Larger batches
    /// mean fewer dataflow steps (each pays timely's progress bookkeeping) when a backlog is
    /// read: 8,192 was ~8% faster than 4,096 at `-w 2`; 16,384 and more gained nothing.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    pub max_poll_batch: usize,
    /// Event time (ms) a telemetry partition may be read ahead of the slowest one before its
    /// reading is paused; 0 never pauses. Replaying a backlog, partitions with fewer drivers cross
    /// the race faster, and what they read ahead waits in memory for the watermark; paused, it
    /// waits in Kafka. Results do not depend on it.
    #[arg(long, default_value_t = DEFAULT_MAX_READ_AHEAD_MS)]
    pub max_read_ahead_ms: u64,
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

    /// Sets what these flags say about reading and committing on `source`: when a partition
    /// stops holding the watermark back, and how often offsets and marks are committed. Both
    /// pipelines' sources take them.
    pub fn apply_source_timing(&self, source: &mut SourceConfig) {
        source.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        source.eof_grace = Duration::from_millis(self.eof_idle_ms);
        source.commit_interval = Duration::from_millis(self.commit_interval_ms);
    }
}

impl Default for DataflowArgs {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        DataflowArgs {
            group: "pitwall".into(),
            telemetry_topic: topics::TELEMETRY.into(),
            alerts_topic: topics::ALERTS.into(),
            windows_topic: topics::WINDOWS.into(),
            dlq_topic: topics::DLQ.into(),
            late_topic: topics::LATE.into(),
            window_length_ms: 5_000,
            window_slide_ms: 1_000,
            allowed_lateness_ms: 500,
            eof_idle_ms: 200,
            idle_timeout_ms: 3_000,
            max_poll_batch: DEFAULT_MAX_BATCH,
            max_read_ahead_ms: DEFAULT_MAX_READ_AHEAD_MS,
            commit_interval_ms: 1_000,
            key_ttl_ms: 300_000,
            time_granularity_ms: DEFAULT_TIME_GRANULARITY_MS,
            drivers: None,
            max_record_bytes: pitwall_dataflows::decode::DEFAULT_MAX_RECORD_BYTES,
            alerts_after_watermark: false,
        }
    }
}

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

/// Model, video and storage settings, shared by `run` and `demo`.
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
    #[arg(long, value_enum, default_value = "heatmap")]
    pub fire_model_kind: FireModelKindArg,
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
    #[arg(long, default_value_t = 8)]
    pub infer_batch: usize,
    /// Longest an item waits for its batch to fill, in ms.
    #[arg(long, default_value_t = 20)]
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
    #[arg(long, default_value = "pitwall-video")]
    pub video_group: String,
    /// A video frame more than this far (ms, by its production time) behind its partition's
    /// newest frame is late (to the late topic); also how long the video source's commits trail.
    #[arg(long, default_value_t = 60_000)]
    pub video_lateness_ms: u64,
    /// A video with no frame for this many seconds is finished without its end marker.
    #[arg(long, default_value_t = 300)]
    pub video_idle_s: u64,
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
}

impl Default for ModelArgs {
    /// The flags' defaults (the S3 settings left empty, whatever the environment says).
    fn default() -> Self {
        ModelArgs {
            onnxruntime: None,
            fire_model: None,
            fire_model_kind: FireModelKindArg::Heatmap,
            fire_classes: vec!["fire".into(), "smoke".into()],
            fire_scores: pitwall_dataflows::video::detect::ScoreScale::Auto,
            model_input: (128, 128),
            fire_threshold: 0.5,
            infer_batch: 8,
            infer_wait_ms: 20,
            intra_threads: 1,
            predictions_model: None,
            predictions_topic: topics::PREDICTIONS.into(),
            video_topic: topics::VIDEO_FRAMES.into(),
            detections_topic: topics::FIRE_DETECTIONS.into(),
            completions_topic: topics::VIDEO_COMPLETIONS.into(),
            video_group: "pitwall-video".into(),
            video_lateness_ms: 60_000,
            video_idle_s: 300,
            spool: None,
            video_out: PathBuf::from("pitwall-videos"),
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key: None,
            s3_secret_key: None,
            s3_multipart_mib: 16,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FireModelKindArg {
    Heatmap,
    Yolo,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
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
    /// 127.0.0.1:8080 (loopback). Bind a non-loopback address only with --bridge-token.
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
    #[arg(long, default_value_t = 60_000)]
    pub bridge_points: usize,
}

impl Default for BridgeArgs {
    /// No bridge; the flags' defaults otherwise.
    fn default() -> Self {
        BridgeArgs { bridge: None, bridge_token: None, bridge_cors_origin: Vec::new(), bridge_points: 60_000 }
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

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub timely: TimelyArgs,
    /// Dataflows to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "telemetry")]
    pub pipelines: Vec<Pipeline>,
    #[command(flatten)]
    pub dataflow: DataflowArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    /// Read every assigned partition up to the end offsets seen at start, drain all windows,
    /// flush sinks, commit and exit 0.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Print help (`-h` is the timely hostfile flag).
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to read.
    pub topic: String,
    /// Start at the oldest message (default: only new messages).
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop once the end offsets seen at start are reached.
    #[arg(long)]
    pub exit_at_end: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Use this broker instead of the embedded one (topics are created if missing).
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Replay speed of the generated race.
    #[arg(long, default_value_t = 4.0)]
    pub speed: f64,
    /// Drivers in the generated race.
    #[arg(long, default_value_t = 20)]
    pub drivers: usize,
    /// Laps in the generated race.
    #[arg(long, default_value_t = 5)]
    pub laps: u32,
    /// Timely worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    pub workers: usize,
    /// Random seed of the generated race.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Telemetry only: no generated fire clip, no predictions, no ONNX Runtime needed.
    #[arg(long)]
    pub no_video: bool,
    /// Length of the generated fire clip in seconds (replayed in real time).
    #[arg(long, default_value_t = 10.0)]
    pub video_seconds: f64,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The scaling harness: preload a generated race, measure the raw consume+decode ceiling,
    /// `pitwall run --exit-at-end` at each cluster shape, and ingest-to-alert latency at fixed
    /// offered rates; write results.csv, results.md and PNG plots under OUT/<date>/.
    Scaling(ScalingArgs),
    /// One plain consumer that reads and JSON-decodes every record of a topic (the raw ceiling
    /// the harness compares against); prints a JSON report.
    #[command(hide = true)]
    Ceiling(CeilingArgs),
    /// Video: frames/s of `run --pipelines video --exit-at-end` at each cluster shape against
    /// the fire model alone, and the latency of a clip replayed in real time (frame ->
    /// detection, end of clip -> overlayed video stored); writes OUT/<date>/video.{csv,md}.
    Video(VideoBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct VideoBenchArgs {
    /// Use this Kafka cluster instead of starting a Tansu broker on a free loopback port.
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: Option<String>,
    /// Use librdkafka's mock cluster, hosted in this process, instead of Tansu.
    #[arg(long, conflicts_with = "brokers")]
    pub mock_broker: bool,
    /// Copies of the generated clip preloaded for the throughput runs (one video id each; a
    /// video is the unit of parallelism, so a few videos balance badly over workers).
    #[arg(long, default_value_t = 24)]
    pub videos: usize,
    /// Length of the generated clip, seconds (25 fps).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Frame size of the generated clip, WIDTHxHEIGHT (e.g. 1920x1080 for 1080p input). The
    /// producers scale frames down to `produce video`'s default --max-width (640) as in use.
    #[arg(long, default_value = "320x180", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Cluster shapes of the throughput runs, WORKERSxPROCESSES (only single-process shapes).
    #[arg(long, value_delimiter = ',', default_value = "1x1,2x1")]
    pub configs: Vec<ClusterShape>,
    /// Worker threads of the live latency run.
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,
    /// Results go to OUT/<date>/video.csv and video.md.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A quick check that every figure is produced: 2 copies of a 2 s clip.
    #[arg(long)]
    pub smoke: bool,
    /// Longest any one measured command may run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

impl VideoBenchArgs {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s)
    }
}

/// A timely cluster shape, written WORKERSxPROCESSES (`2x1`: `-w 2`; `1x2`: `-n 2 -w 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    pub workers: usize,
    pub processes: usize,
}

impl ClusterShape {
    /// A file-name-safe name, e.g. `w2n1`.
    pub fn slug(&self) -> String {
        format!("w{}n{}", self.workers, self.processes)
    }
}

impl std::str::FromStr for ClusterShape {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<usize>().ok().filter(|n| *n > 0);
        match text.split_once('x').map(|(w, n)| (parse(w), parse(n))) {
            Some((Some(workers), Some(processes))) => Ok(ClusterShape { workers, processes }),
            _ => Err(format!("expected WORKERSxPROCESSES with both at least 1, e.g. 2x1, got {text:?}")),
        }
    }
}

impl std::fmt::Display for ClusterShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.processes {
            1 => write!(f, "-w {}", self.workers),
            n => write!(f, "-n {n} -w {}", self.workers),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ScalingArgs {
    /// Use this Kafka cluster instead of starting a Tansu broker on a free loopback port.
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: Option<String>,
    /// Extra librdkafka property `key=value` for every client (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = pitwall_connectors::kafka::config::parse_property)]
    pub property: Vec<(String, String)>,
    /// Use librdkafka's mock cluster, hosted in this process, instead of Tansu: for comparison,
    /// since it answers a fetch as soon as data is there, where Tansu holds it for the full wait.
    /// It keeps at most 5 MiB per partition (~55,000 records of the default race over 8
    /// partitions); a `--records` it would not keep whole is refused, naming what fits.
    #[arg(long, conflicts_with = "brokers")]
    pub mock_broker: bool,
    /// Records of the generated race preloaded for the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Drivers in the generated race.
    #[arg(long, default_value_t = 20)]
    pub drivers: usize,
    /// Partitions of the preloaded telemetry topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Cluster shapes to run, WORKERSxPROCESSES, comma-separated (`1x2` is `-n 2 -w 1`).
    #[arg(long, value_delimiter = ',', default_value = "1x1,2x1,1x2")]
    pub configs: Vec<ClusterShape>,
    /// Measure the ceiling and every shape this many times (interleaved) and report the median
    /// run of each, with the slowest and fastest: one run on a shared VM can be 20% off.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeat: u64,
    /// Offered loads (msg/s) for the latency runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub rates: Vec<u64>,
    /// Seconds of load per latency run (capped by the race's size).
    #[arg(long, default_value_t = 20.0)]
    pub latency_seconds: f64,
    /// Worker threads of the latency runs.
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,
    /// Extra flag for every `pitwall run` the harness starts (repeatable), e.g.
    /// `--run-arg=--allowed-lateness-ms=0`.
    #[arg(long = "run-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
    /// Results go to OUT/<date>/ (results.csv, results.md, throughput.png, latency.png, logs/).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A quick check that every figure is produced: 20,000 records, 500 and 2,000 msg/s for 4 s
    /// each (overrides --records, --rates and --latency-seconds).
    #[arg(long)]
    pub smoke: bool,
    /// Longest any one measured command may run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

impl ScalingArgs {
    /// The arguments with `--smoke` applied.
    pub fn effective(&self) -> ScalingArgs {
        let mut args = self.clone();
        if args.smoke {
            args.records = 20_000;
            args.rates = vec![500, 2_000];
            args.latency_seconds = 4.0;
        }
        args
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s)
    }
}

#[derive(Args, Debug)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to read from the beginning to its end.
    #[arg(long)]
    pub topic: String,
}
