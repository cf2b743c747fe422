//! `pitwall topics`.

use clap::{Args, Subcommand};

use super::KafkaArgs;
use crate::topics;

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create every pitwall topic that does not exist yet, and grow any that has fewer
    /// partitions than asked (idempotent; a topic never shrinks). Growing moves some keys to
    /// new partitions: see the README's "Scaling out".
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
