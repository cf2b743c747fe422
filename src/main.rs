//! `pitwall`: see `pitwall --help`.

use std::io::IsTerminal;

use anyhow::Result;
use clap::Parser;
use pitwall::cli::{BenchCommand, Cli, Command, GenCommand, GroupCommand, ProduceCommand, TopicsCommand};
use pitwall::commands;

/// jemalloc serves every allocation of the process: Rust's through this, and (with its
/// `unprefixed_malloc_on_supported_platforms` feature) librdkafka's C `malloc`/`free` too.
/// With glibc's allocator a worker freeing a message librdkafka's fetch thread allocated waited
/// on that thread's arena lock: half of a `-w 1` worker's context switches (README "Performance").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PITWALL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // The seed systems' name for the brokers, when pitwall's own is not set.
    if std::env::var_os("PITWALL_BROKERS").is_none() {
        if let Some(brokers) = std::env::var_os("KAFKA_BOOTSTRAP_SERVERS") {
            // Single-threaded still: nothing else reads the environment yet.
            unsafe { std::env::set_var("PITWALL_BROKERS", brokers) };
        }
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Gen(GenCommand::Race(args)) => commands::gen::race(args),
        Command::Gen(GenCommand::Video(args)) => commands::gen::video(args),
        Command::Topics(TopicsCommand::Create(args)) => commands::topics::create(args),
        Command::Group(GroupCommand::Describe(args)) => commands::group::describe(args),
        Command::Produce(ProduceCommand::Telemetry(args)) => commands::produce::telemetry(args),
        Command::Produce(ProduceCommand::Video(args)) => commands::produce::video(args),
        Command::Run(args) => commands::run::run(args),
        Command::Tail(args) => commands::tail::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Bench(BenchCommand::Scaling(args)) => pitwall::bench::scaling(args),
        Command::Bench(BenchCommand::Ceiling(args)) => pitwall::bench::ceiling(args),
        Command::Bench(BenchCommand::Video(args)) => pitwall::bench::video::video(args),
        Command::Bench(BenchCommand::Group(args)) => pitwall::bench::group::group(args),
    }
}
