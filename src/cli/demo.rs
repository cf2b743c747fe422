//! `pitwall demo`.

use clap::Args;

use super::{BridgeArgs, ModelArgs, StorageArgs};

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
    pub storage: StorageArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
}
