//! `pitwall produce telemetry|video`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::KafkaArgs;
use crate::topics;

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
    /// Serve this producer's metrics at `http://ADDR/metrics` (Prometheus) while it runs:
    /// records and bytes delivered, delivery errors, retries, the queue's depth and the send
    /// latency, per topic (`pitwall_producer_*`), and the process metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
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
    /// Serve this producer's metrics at `http://ADDR/metrics` (Prometheus) while it runs:
    /// records and bytes delivered, delivery errors, retries, the queue's depth and the send
    /// latency, per topic (`pitwall_producer_*`), and the process metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
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
