//! `pitwall bench group`: what scaling out through the consumer group costs.
//!
//! - **Hand-over pause.** A race replayed live (event time `--speed` times wall time) into a
//!   4-partition topic, read by instances of `run --assignment group -w 1` with one group. Each
//!   repetition has an instance join, then leave cleanly (SIGTERM), on Tansu; and join, then be
//!   SIGKILLed, on librdkafka's mock cluster (Tansu 0.6 never gives a dead member's partitions
//!   to the survivors: README "Scaling out"). The pause of one event is, over the input
//!   partitions that carry drivers, the longest gap between two window results of that
//!   partition's drivers arriving in the windows topic, from just before the event until the
//!   group has settled; the same measure over a quiet stretch is the baseline.
//! - **Throughput.** The same preloaded topic read to its end (`--exit-at-end`) by one
//!   `run -w 2` (static) and by two `run -w 1 --assignment group` started together,
//!   interleaved `--repeat` times; msg/s is the records over the slowest instance's own seconds.
//!
//! Writes OUT/<date>/group.md and group.csv.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::tail::read_topic;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_dataflows::partition::key_partition;
use rdkafka::message::Message;

use super::broker::Broker;
use super::process::Measured;
use super::{race_records, run_command};
use crate::cli::GroupBenchArgs;
use crate::commands::produce::produce_records;

/// Partitions of the input topic (`topics create`'s default for `f1-telemetry`).
const PARTITIONS: i32 = 4;
/// Drivers of the generated race.
const DRIVERS: usize = 8;
/// How long the group is left to settle after an event before its pause is read.
const SETTLE: Duration = Duration::from_secs(12);
/// After a kill, the session timeout (6 s) comes first.
const SETTLE_AFTER_KILL: Duration = Duration::from_secs(25);

/// One measured event.
#[derive(Clone, Debug)]
struct Pause {
    event: &'static str,
    broker: &'static str,
    seconds: f64,
}

/// Window results seen in the windows topic: per input partition, arrival times (ms since the
/// harness started).
#[derive(Default)]
struct Arrivals(Mutex<BTreeMap<i32, Vec<u64>>>);

impl Arrivals {
    /// The longest gap between consecutive arrivals of any partition within `[from, to]`
    /// (counting from `from` to its first arrival, and from its last to `to`).
    fn longest_gap(&self, from: u64, to: u64) -> f64 {
        let arrivals = self.0.lock().expect("arrivals lock");
        let mut longest = (0, -1);
        for (partition, times) in arrivals.iter() {
            let mut last = from;
            for &t in times.iter().filter(|t| **t >= from && **t <= to) {
                longest = longest.max((t - last, *partition));
                last = t;
            }
            longest = longest.max((to.saturating_sub(last), *partition));
        }
        tracing::info!(from, to, gap_ms = longest.0, partition = longest.1, "longest gap");
        longest.0 as f64 / 1_000.0
    }
}

pub fn group(args: &GroupBenchArgs) -> Result<()> {
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let dir = args.out.join(&date);
    let logs = dir.join("logs-group");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {logs:?}"))?;
    let mut pauses = Vec::new();
    let tansu = Broker::choose(None, false)?;
    eprintln!("hand-over pauses on {}: join and clean leave, {} times", tansu.describe(), args.repeat);
    pauses.extend(handover(&tansu, "tansu", &[("join", Event::Join), ("leave", Event::Leave)], args.speed, args, &logs)?);
    let throughput = throughput(&tansu, args, &logs)?;
    drop(tansu);
    let mock = Broker::choose(None, true)?;
    eprintln!("hand-over pauses on {}: kill, {} times", mock.describe(), args.repeat);
    pauses.extend(handover(&mock, "mock", &[("kill", Event::Kill)], args.kill_speed, args, &logs)?);
    let markdown = report(&pauses, &throughput, args);
    std::fs::write(dir.join("group.md"), &markdown)?;
    let mut csv = String::from("kind,broker,event,seconds\n");
    for p in &pauses {
        csv += &format!("pause,{},{},{:.3}\n", p.broker, p.event, p.seconds);
    }
    for (shape, rate) in &throughput {
        csv += &format!("throughput,tansu,{shape},{rate:.0}\n");
    }
    std::fs::write(dir.join("group.csv"), csv)?;
    println!("{markdown}");
    eprintln!("wrote {}", dir.join("group.md").display());
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Join,
    Leave,
    Kill,
}

/// One instance of the shared job.
fn instance(kafka: &KafkaConfig, topic: &str, group: &str, name: &str, logs: &std::path::Path, exit_at_end: bool) -> Result<Measured> {
    let mut extra: Vec<String> = ["--assignment", "group", "--eof-idle-ms", "1500", "--commit-interval-ms", "200"].map(String::from).to_vec();
    if exit_at_end {
        extra.push("--exit-at-end".into());
    }
    let mut command: Command = run_command(kafka, topic, "bench-alerts", group, 1, &extra);
    // The logs say when each assignment came (read them beside the pauses).
    command.env("PITWALL_LOG", "warn,pitwall_connectors::kafka::group=info,pitwall_connectors::kafka::source=info,pitwall::job=info");
    Measured::spawn(command, name, logs)
}

/// The pauses of `events`, each `--repeat` times, on `broker`, with a live replay running.
fn handover(
    broker: &Broker,
    name: &'static str,
    events: &[(&'static str, Event)],
    speed: f64,
    args: &GroupBenchArgs,
    logs: &std::path::Path,
) -> Result<Vec<Pause>> {
    let kafka = KafkaConfig::new(broker.brokers());
    let nonce = format!("{}-{name}", std::process::id());
    let topic = format!("group-live-{nonce}");
    let windows = "bench-windows".to_string();
    broker.create_topics(
        &kafka,
        &[(topic.clone(), PARTITIONS), (windows.clone(), 4), ("bench-alerts".into(), 3), ("bench-dlq".into(), 1), ("bench-late".into(), 1)],
    )?;
    let group = format!("group-bench-{nonce}");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let now_ms = move || started.elapsed().as_millis() as u64;
    let arrivals = Arc::new(Arrivals::default());
    let mut pauses = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        // The windows topic, read as results arrive (a window result is keyed by its driver).
        let reader = {
            let (kafka, stop, arrivals) = (kafka.clone(), stop.clone(), arrivals.clone());
            scope.spawn(move || {
                read_topic(&kafka, &windows, false, false, &stop, |message| {
                    if let Some(key) = message.key() {
                        let partition = key_partition(key, PARTITIONS);
                        arrivals.0.lock().expect("arrivals lock").entry(partition).or_default().push(now_ms());
                    }
                })
            })
        };
        // The live replay: one record per batch (Tansu 0.6 skips the rest of a batch that a
        // fetch starts inside, which a hand-over's resume would hit), a producer per partition
        // so that single-record batches keep up with the pace (a partition falling behind in
        // event time holds the watermark back and looks like a pause).
        let producer_kafka = KafkaConfig { properties: vec![("batch.num.messages".into(), "1".into())], ..kafka.clone() };
        let replay = {
            let (topic, stop) = (topic.clone(), stop.clone());
            let records = race_records(args.live_records, DRIVERS);
            scope.spawn(move || {
                produce_records(
                    &producer_kafka,
                    &topic,
                    records,
                    &ReplayConfig { speed: Some(speed), producers: PARTITIONS as usize, stop: Some(stop), metrics: None },
                    true,
                )
            })
        };
        let result = (|| -> Result<()> {
            let first = instance(&kafka, &topic, &group, &format!("{name}-first"), logs, false)?;
            std::thread::sleep(SETTLE);
            let quiet_from = now_ms();
            std::thread::sleep(SETTLE);
            let baseline = arrivals.longest_gap(quiet_from, now_ms());
            pauses.push(Pause { event: "none (baseline)", broker: name, seconds: baseline });
            for round in 0..args.repeat {
                let mut second = None;
                for (label, event) in events {
                    if replay.is_finished() {
                        bail!("the live replay ended before the repetitions did: raise --live-records");
                    }
                    let at = now_ms().saturating_sub(500);
                    // Where the pause is measured from, and how long the group gets to settle.
                    let (from, settle) = match event {
                        Event::Join => {
                            second = Some(instance(&kafka, &topic, &group, &format!("{name}-second-{round}"), logs, false)?);
                            (at, SETTLE)
                        }
                        Event::Leave => {
                            let leaving = second.take().context("a leave follows a join")?;
                            leaving.terminate();
                            leaving.finish(Duration::from_secs(60))?;
                            (at, SETTLE)
                        }
                        Event::Kill => {
                            let killed = match second.take() {
                                Some(killed) => killed,
                                None => {
                                    let joined = instance(&kafka, &topic, &group, &format!("{name}-second-{round}"), logs, false)?;
                                    std::thread::sleep(SETTLE);
                                    joined
                                }
                            };
                            let at_kill = now_ms().saturating_sub(500);
                            killed.kill();
                            (at_kill, SETTLE_AFTER_KILL)
                        }
                    };
                    std::thread::sleep(settle);
                    let seconds = arrivals.longest_gap(from, now_ms());
                    eprintln!("  {label} {}: {seconds:.2} s", round + 1);
                    pauses.push(Pause { event: label, broker: name, seconds });
                }
                if let Some(second) = second {
                    second.terminate();
                    second.finish(Duration::from_secs(60))?;
                    std::thread::sleep(SETTLE);
                }
            }
            first.terminate();
            first.finish(Duration::from_secs(60))?;
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let _ = replay.join();
        let _ = reader.join();
        result
    })?;
    Ok(pauses)
}

/// msg/s of one `-w 2` against two `-w 1` in a group, on one preloaded topic, interleaved.
fn throughput(broker: &Broker, args: &GroupBenchArgs, logs: &std::path::Path) -> Result<Vec<(String, f64)>> {
    let kafka = KafkaConfig::new(broker.brokers());
    let topic = format!("group-preload-{}", std::process::id());
    broker.create_topics(&kafka, &[(topic.clone(), PARTITIONS)])?;
    let records = race_records(args.throughput_records, DRIVERS);
    let total = records.len() as u64;
    eprintln!("throughput: preloading {total} records");
    produce_records(&kafka, &topic, records, &ReplayConfig { speed: None, producers: 2, stop: None, metrics: None }, true)?;
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..args.throughput_repeat {
        let command = run_command(&kafka, &topic, "bench-alerts", &format!("tp-static-{round}"), 2, &["--exit-at-end".to_string()]);
        let report = Measured::spawn(command, &format!("tp-w2-{round}"), logs)?.finish(Duration::from_secs(600))?.report()?;
        let read = report["records"].as_u64().context("report.records")?;
        if read != total {
            bail!("-w 2 read {read} of {total} records");
        }
        one.push(total as f64 / report["seconds"].as_f64().context("report.seconds")?);
        let group = format!("tp-group-{round}");
        let instances = [0, 1].map(|i| instance(&kafka, &topic, &group, &format!("tp-2xw1-{round}-{i}"), logs, true));
        let (mut read, mut seconds) = (0, 0f64);
        for instance in instances {
            let report = instance?.finish(Duration::from_secs(600))?.report()?;
            read += report["records"].as_u64().context("report.records")?;
            seconds = seconds.max(report["seconds"].as_f64().context("report.seconds")?);
        }
        if read != total {
            bail!("two -w 1 instances read {read} of {total} records between them");
        }
        two.push(total as f64 / seconds);
        eprintln!("  round {}: -w 2 {:.0} msg/s, 2 x -w 1 {:.0} msg/s", round + 1, one[one.len() - 1], two[two.len() - 1]);
    }
    Ok(vec![("one instance -w 2 (static)".into(), median(&one)), ("two instances -w 1 (group)".into(), median(&two))])
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(pauses: &[Pause], throughput: &[(String, f64)], args: &GroupBenchArgs) -> String {
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "# Scaling out through the consumer group (`pitwall bench group`)\n\nMachine: {cores} cores ({machine}). Live replay into {PARTITIONS} partitions ({DRIVERS} drivers) at {}x on Tansu and {}x on the mock cluster (it keeps 5 MiB per partition and drops older segments, which a hand-over's resume must still find), instances `run -w 1 --assignment group`.\n\n",
        args.speed, args.kill_speed
    );
    out += "## Hand-over pause (seconds until every partition's drivers publish windows again)\n\n| event | broker | runs | median | max | all |\n| --- | --- | --- | --- | --- | --- |\n";
    let mut kinds: Vec<(&str, &str)> = Vec::new();
    for kind in pauses.iter().map(|p| (p.event, p.broker)) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    for (event, broker) in kinds {
        let values: Vec<f64> = pauses.iter().filter(|p| p.event == event && p.broker == broker).map(|p| p.seconds).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        let all: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        out += &format!("| {event} | {broker} | {} | {:.2} | {max:.2} | {} |\n", values.len(), median(&values), all.join(", "));
    }
    out += &format!(
        "\n## Throughput, same preloaded topic ({} records, median of {})\n\n| shape | msg/s |\n| --- | --- |\n",
        args.throughput_records, args.throughput_repeat
    );
    for (shape, rate) in throughput {
        out += &format!("| {shape} | {rate:.0} |\n");
    }
    out
}
