//! `pitwall tail`.

use clap::Args;

use super::KafkaArgs;

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
