//! The `pitwall` binary's library half: the command-line contract (`cli.rs`), the wiring of
//! connectors to dataflows (`telemetry_job.rs`) one file per command (`commands/`)
//! and the scaling harness (`bench/`).

pub mod bench;
pub mod cli;
pub mod commands;
pub mod telemetry_job;
pub mod topics;
pub mod video_job;
