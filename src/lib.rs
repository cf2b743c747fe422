//! The `pitwall` binary's library half: the command-line contract (`cli.rs`), the wiring of
//! connectors to dataflows (`telemetry_job.rs`) and one file per command (`commands/`).

pub mod cli;
pub mod commands;
pub mod telemetry_job;
pub mod topics;
