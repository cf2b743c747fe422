//! `pitwall run`.

use clap::{ArgAction, Args};

use super::{BridgeArgs, DataflowArgs, KafkaArgs, ModelArgs, Pipeline, StorageArgs, TimelyArgs, VideoArgs};

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
    pub video: VideoArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
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
