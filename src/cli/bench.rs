//! `pitwall bench scaling|video|ceiling`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::shared::{parse_size, ModelArgs};
use super::{ClientProperties, KafkaArgs};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The scaling harness: preload a generated race, measure the raw consume+decode ceiling,
    /// `pitwall run --exit-at-end` at each cluster shape, and ingest-to-alert latency at fixed
    /// offered rates; write results.csv, results.md and PNG plots under OUT/<date>/.
    Scaling(ScalingArgs),
    /// One plain consumer that reads and JSON-decodes every record of a topic (the raw ceiling
    /// the harness compares against); prints a JSON report.
    #[command(hide = true)]
    Ceiling(CeilingArgs),
    /// Video: frames/s of `run --pipelines video --exit-at-end` at each cluster shape against
    /// the fire model alone, and the latency of a clip replayed in real time (frame ->
    /// detection, end of clip -> overlayed video stored); writes OUT/<date>/video.{csv,md}.
    Video(VideoBenchArgs),
    /// Scaling out through the consumer group: the hand-over pause of a join and a clean leave
    /// (Tansu) and of a kill (librdkafka's mock cluster) during a live replay, and msg/s of two
    /// `-w 1` instances in a group against one `-w 2`; writes OUT/<date>/group.{md,csv}.
    Group(GroupBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GroupBenchArgs {
    /// Repetitions of each hand-over event.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Event time runs this many times faster than wall time in the live replay (~530 msg/s at
    /// 10x, sent one record per batch).
    #[arg(long, default_value_t = 10.0)]
    pub speed: f64,
    /// The live replay's speed for the kill on librdkafka's mock cluster, which keeps only 5 MiB
    /// per partition (older segments dropped): slow enough that a resume finds its offset.
    #[arg(long, default_value_t = 2.0)]
    pub kill_speed: f64,
    /// Records of the live race (it must outlast the repetitions: ~25 s of wall time each).
    #[arg(long, default_value_t = 400_000)]
    pub live_records: usize,
    /// Records preloaded for the throughput runs.
    #[arg(long, default_value_t = 200_000)]
    pub throughput_records: usize,
    /// Repetitions of each throughput run (interleaved).
    #[arg(long, default_value_t = 3)]
    pub throughput_repeat: usize,
    /// Results go to OUT/<date>/group.md and group.csv.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// The broker a benchmark runs against, and the client properties of every client it starts.
#[derive(Args, Debug, Clone)]
pub struct BenchBroker {
    /// Use this Kafka cluster instead of starting a Tansu broker on a free loopback port.
    #[arg(long, short = 'b', env = "PITWALL_BROKERS")]
    pub brokers: Option<String>,
    /// Use librdkafka's mock cluster, hosted in this process, instead of Tansu: for comparison,
    /// since it answers a fetch as soon as data is there, where Tansu holds it for the full wait.
    /// It keeps at most 5 MiB per partition (~55,000 records of the default race over 8
    /// partitions); a `--records` it would not keep whole is refused, naming what fits.
    #[arg(long, conflicts_with = "brokers")]
    pub mock_broker: bool,
    #[command(flatten)]
    pub client: ClientProperties,
}

#[derive(Args, Debug, Clone)]
pub struct VideoBenchArgs {
    #[command(flatten)]
    pub broker: BenchBroker,
    /// Copies of the generated clip preloaded for the throughput runs (one video id each; a
    /// video is the unit of parallelism, so a few videos balance badly over workers).
    #[arg(long, default_value_t = 24)]
    pub videos: usize,
    /// Length of the generated clip, seconds (25 fps).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Frame size of the generated clip, WIDTHxHEIGHT (e.g. 1920x1080 for 1080p input). The
    /// producers scale frames down to `produce video`'s default --max-width (640) as in use.
    #[arg(long, default_value = "320x180", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Cluster shapes of the throughput runs, WORKERSxPROCESSES (only single-process shapes).
    #[arg(long, value_delimiter = ',', default_value = "1x1,2x1")]
    pub configs: Vec<ClusterShape>,
    /// Worker threads of the live latency run.
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,
    /// The fire model and how it is fed (`--fire-model PATH --fire-model-kind yolo`, ...): used
    /// by the model-alone baseline and passed to every `pitwall run` of the bench.
    #[command(flatten)]
    pub models: ModelArgs,
    /// Results go to OUT/<date>/video.csv and video.md.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A quick check that every figure is produced: 2 copies of a 2 s clip.
    #[arg(long)]
    pub smoke: bool,
    /// Longest any one measured command may run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

impl VideoBenchArgs {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s)
    }
}

/// A timely cluster shape, written WORKERSxPROCESSES (`2x1`: `-w 2`; `1x2`: `-n 2 -w 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    pub workers: usize,
    pub processes: usize,
}

impl ClusterShape {
    /// A file-name-safe name, e.g. `w2n1`.
    pub fn slug(&self) -> String {
        format!("w{}n{}", self.workers, self.processes)
    }
}

impl std::str::FromStr for ClusterShape {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<usize>().ok().filter(|n| *n > 0);
        match text.split_once('x').map(|(w, n)| (parse(w), parse(n))) {
            Some((Some(workers), Some(processes))) => Ok(ClusterShape { workers, processes }),
            _ => Err(format!("expected WORKERSxPROCESSES with both at least 1, e.g. 2x1, got {text:?}")),
        }
    }
}

impl std::fmt::Display for ClusterShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.processes {
            1 => write!(f, "-w {}", self.workers),
            n => write!(f, "-n {n} -w {}", self.workers),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ScalingArgs {
    #[command(flatten)]
    pub broker: BenchBroker,
    /// Records of the generated race preloaded for the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Drivers in the generated race.
    #[arg(long, default_value_t = 20)]
    pub drivers: usize,
    /// Partitions of the preloaded telemetry topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Cluster shapes to run, WORKERSxPROCESSES, comma-separated (`1x2` is `-n 2 -w 1`).
    #[arg(long, value_delimiter = ',', default_value = "1x1,2x1,1x2")]
    pub configs: Vec<ClusterShape>,
    /// Measure the ceiling and every shape this many times (interleaved) and report the median
    /// run of each, with the slowest and fastest: one run on a shared VM can be 20% off.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeat: u64,
    /// Offered loads (msg/s) for the latency runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub rates: Vec<u64>,
    /// Seconds of load per latency run (capped by the race's size).
    #[arg(long, default_value_t = 20.0)]
    pub latency_seconds: f64,
    /// Worker threads of the latency runs.
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,
    /// Extra flag for every `pitwall run` the harness starts (repeatable), e.g.
    /// `--run-arg=--allowed-lateness-ms=0`.
    #[arg(long = "run-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
    /// Results go to OUT/<date>/ (results.csv, results.md, throughput.png, latency.png, logs/).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A quick check that every figure is produced: 20,000 records, 500 and 2,000 msg/s for 4 s
    /// each (overrides --records, --rates and --latency-seconds).
    #[arg(long)]
    pub smoke: bool,
    /// Longest any one measured command may run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

impl ScalingArgs {
    /// The arguments with `--smoke` applied.
    pub fn effective(&self) -> ScalingArgs {
        let mut args = self.clone();
        if args.smoke {
            args.records = 20_000;
            args.rates = vec![500, 2_000];
            args.latency_seconds = 4.0;
        }
        args
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s)
    }
}

#[derive(Args, Debug)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to read from the beginning to its end.
    #[arg(long)]
    pub topic: String,
}
