//! The command-line contract. Every flag is documented here; `pitwall --help` prints it.
//!
//! One file per command (`gen.rs`, `topics.rs`, `group.rs`, `produce.rs`, `run.rs`, `tail.rs`, `demo.rs`,
//! `bench.rs`), and `shared.rs` for the flag groups several commands take (Kafka, the dataflow,
//! models, video, storage, bridge, timely). Each default is stated once, in its clap attribute:
//! the `Default` of a flag group is what parsing no flags gives (`parsed_defaults`).

mod bench;
mod demo;
mod gen;
mod group;
mod produce;
mod run;
mod shared;
mod tail;
mod topics;

use clap::{Args, Parser, Subcommand};

pub use self::bench::{BenchBroker, BenchCommand, CeilingArgs, ClusterShape, GroupBenchArgs, ScalingArgs, VideoBenchArgs};
pub use self::demo::DemoArgs;
pub use self::gen::{FileFormat, GenCommand, GenRaceArgs, GenVideoArgs};
pub use self::group::{GroupCommand, GroupDescribeArgs};
pub use self::produce::{ProduceCommand, ProduceTelemetryArgs, ProduceVideoArgs};
pub use self::run::RunArgs;
pub use self::shared::{Assignment, BridgeArgs, ClientProperties, DataflowArgs, KafkaArgs, ModelArgs, StorageArgs, TimelyArgs, VideoArgs};
pub use self::tail::TailArgs;
pub use self::topics::{TopicsCommand, TopicsCreateArgs};
pub use crate::job::Pipeline;

#[derive(Parser, Debug)]
#[command(name = "pitwall", version, about = "Streaming dataflow engine for F1 telemetry (and video fire detection) on timely dataflow and Kafka", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate test data.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Manage pitwall's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Watch how instances share a consumer group's partitions.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Publish data into Kafka.
    #[command(subcommand)]
    Produce(ProduceCommand),
    /// Run the dataflows (`--pipelines`): telemetry windows and alerts, predictions, video fire detection.
    Run(Box<RunArgs>),
    /// Print the messages of a topic as JSON lines with partition, offset and key (like kcat).
    Tail(TailArgs),
    /// The main job with zero set-up: embedded broker, generated race, live alerts.
    Demo(Box<DemoArgs>),
    /// Measure throughput, latency and scaling (see `pitwall bench scaling --help`).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// What parsing no flags gives for the flag group `T`: its defaults, stated once in its clap
/// attributes (and whatever environment variables it reads are set to).
pub(crate) fn parsed_defaults<T: Args>() -> T {
    #[derive(Parser)]
    struct Only<T: Args> {
        #[command(flatten)]
        args: T,
    }
    Only::<T>::try_parse_from(["pitwall"]).expect("every flag of a defaulted group has a default").args
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{BridgeArgs, Cli, Command, DataflowArgs, ModelArgs, StorageArgs, VideoArgs};

    #[test]
    fn a_flag_groups_default_is_what_run_parses_without_that_groups_flags() {
        let Command::Run(run) = Cli::try_parse_from(["pitwall", "run", "--brokers", "b:9092"]).expect("parses").command else {
            panic!("a run command");
        };
        assert_eq!(format!("{:?}", run.dataflow), format!("{:?}", DataflowArgs::default()));
        assert_eq!(format!("{:?}", run.models), format!("{:?}", ModelArgs::default()));
        assert_eq!(format!("{:?}", run.video), format!("{:?}", VideoArgs::default()));
        // Spot checks against the documented defaults, so a changed attribute is seen.
        let dataflow = DataflowArgs::default();
        assert_eq!((dataflow.group.as_str(), dataflow.window_length_ms, dataflow.window_slide_ms), ("pitwall", 5_000, 1_000));
        assert_eq!((VideoArgs::default().video_group.as_str(), VideoArgs::default().video_idle_s), ("pitwall-video", 300));
        assert_eq!(ModelArgs::default().model_input, (128, 128));
        // The S3 settings and the bridge token never come from the environment by default.
        assert!(StorageArgs::default().s3_bucket.is_none() && StorageArgs::default().s3_secret_key.is_none());
        assert!(BridgeArgs::default().bridge.is_none() && BridgeArgs::default().bridge_token.is_none());
        assert_eq!(BridgeArgs::default().bridge_points, 60_000);
    }

    #[test]
    fn a_bridge_beyond_loopback_needs_a_token_or_an_explicit_insecure() {
        let bridge = |args: &[&str]| {
            let Command::Run(run) = Cli::try_parse_from([&["pitwall", "run", "--brokers", "b:9092"], args].concat()).expect("parses").command else {
                panic!("a run command");
            };
            run.bridge.check_exposure()
        };
        let refused = bridge(&["--bridge", "0.0.0.0:8080"]).expect_err("open to the network without a token").to_string();
        assert!(refused.contains("--bridge-token") && refused.contains("--bridge-insecure"), "{refused}");
        assert!(bridge(&["--bridge", "192.168.1.10:8080"]).is_err());
        assert!(bridge(&["--bridge", "0.0.0.0:8080", "--bridge-token", "s3cr3t"]).is_ok());
        assert!(bridge(&["--bridge", "0.0.0.0:8080", "--bridge-insecure"]).is_ok());
        assert!(bridge(&["--bridge", "127.0.0.1:8080"]).is_ok() && bridge(&["--bridge", "[::1]:8080"]).is_ok() && bridge(&[]).is_ok());
    }
}
