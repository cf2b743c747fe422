//! `pitwall group`.

use clap::{Args, Subcommand};

use super::KafkaArgs;
use crate::job::Pipeline;

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Per partition of a pipeline's input topic: the group's committed offset, the log end,
    /// the lag, the instance reading it now (client id `pitwall@host/pid`, host) and the
    /// delivered-before mark of the last commit (like `kafka-consumer-groups.sh --describe`).
    Describe(GroupDescribeArgs),
}

#[derive(Args, Debug)]
pub struct GroupDescribeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Whose group and topic to describe when --group / --topic are not given: telemetry
    /// (`pitwall` on `f1-telemetry`) or video (`pitwall-video` on `video-frames`).
    #[arg(long, value_enum, default_value_t = Pipeline::Telemetry)]
    pub pipeline: Pipeline,
    /// The consumer group (default: the pipeline's default group).
    #[arg(long)]
    pub group: Option<String>,
    /// The topic the group reads (default: the pipeline's default input topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Print JSON (one object: group, topic, members, partitions) instead of a table.
    #[arg(long)]
    pub json: bool,
}
