//! The `pitwall` binary's library half: the command-line contract (`cli/`), the wiring of
//! connectors to dataflows (`job/`), one file per command (`commands/`) and the scaling
//! harness (`bench/`).

pub mod bench;
pub mod cli;
pub mod commands;
pub mod job;
pub mod topics;

/// The README's Rust blocks, compiled and run as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
