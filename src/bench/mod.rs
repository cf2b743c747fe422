//! `pitwall bench scaling`: one command that measures, on one topic and in one run, the raw
//! consume+decode ceiling, `pitwall run --exit-at-end` at every cluster shape asked, and
//! ingest-to-alert latency under steady offered loads; then writes CSV, a markdown table and PNG
//! plots under `<out>/<date>/`.
//!
//! `broker.rs` starts Tansu, `process.rs` runs and measures child processes (peak RSS, CPU time),
//! `latency.rs` collects alert latencies, `report.rs` writes the results.

pub mod broker;
pub mod group;
pub mod latency;
pub mod process;
pub mod report;
pub mod video;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::tail::read_topic;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_dataflows::decode::{decode_telemetry, DecodePolicy};
use pitwall_dataflows::records::TelemetryRecord;
use pitwall_dataflows::sim::{Race, RaceConfig};
use serde::Serialize;

use crate::cli::{CeilingArgs, ClusterShape, ScalingArgs};
use crate::commands::produce::produce_records;
use process::Measured;
use report::{Results, Row};

/// Output topics every benchmark run shares (their contents are not inspected).
const SHARED_OUTPUTS: [(&str, i32); 4] = [("bench-alerts", 3), ("bench-windows", 4), ("bench-dlq", 1), ("bench-late", 1)];

/// The whole harness.
pub fn scaling(args: &ScalingArgs) -> Result<()> {
    let args = args.effective();
    let broker = broker::Broker::choose(args.broker.brokers.as_ref(), args.broker.mock_broker)?;
    let kafka = args.broker.client.config(broker.brokers());
    let broker_name = broker.describe();
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let dir = args.out.join(&date);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {dir:?}"))?;
    let nonce = std::process::id();
    let mut results = Results::new(broker_name);

    eprintln!("generating a race of {} records ({} drivers)", args.records, args.drivers);
    let records = race_records(args.records, args.drivers);
    broker.check_fits(&records, args.partitions)?;
    let topic = format!("bench-telemetry-{nonce}");
    let mut wanted: Vec<(String, i32)> = vec![(topic.clone(), args.partitions)];
    wanted.extend(SHARED_OUTPUTS.iter().map(|(t, p)| (t.to_string(), *p)));
    broker.create_topics(&kafka, &wanted)?;

    eprintln!("preloading {topic} ({} partitions)", args.partitions);
    let preload = produce_records(&kafka, &topic, records.clone(), &ReplayConfig { speed: None, producers: 4, stop: None, metrics: None }, true)?;
    if preload.failed > 0 {
        bail!("{} of {} records could not be preloaded", preload.failed, preload.sent);
    }
    results.push(Row::produce(preload.sent, preload.elapsed.as_secs_f64()));

    // The ceiling and every shape, `--repeat` times, interleaved so that drift on a noisy
    // machine touches them all alike; each row is the median run, with the range.
    let mut ceilings = Vec::new();
    let mut shapes: Vec<Vec<Row>> = vec![Vec::new(); args.configs.len()];
    for round in 0..args.repeat.max(1) {
        let of = if args.repeat > 1 { format!(" (run {} of {})", round + 1, args.repeat) } else { String::new() };
        eprintln!("raw ceiling: one consumer, read + decode{of}");
        let mut ceiling = Command::new(std::env::current_exe()?);
        ceiling.args(["bench", "ceiling", "--brokers", &kafka.brokers, "--topic", &topic]).args(property_flags(&kafka));
        let (finished, broker_cpu_s) =
            with_broker_cpu(&broker, || Measured::spawn(ceiling, &format!("ceiling-{round}"), &logs)?.finish(args.timeout()))?;
        let report: CeilingReport = serde_json::from_value(finished.report()?)?;
        if report.records != args.records as u64 {
            bail!("the ceiling consumer read {} records, expected {}", report.records, args.records);
        }
        ceilings.push(Row { broker_cpu_s, ..Row::ceiling(report.records, report.seconds, finished.peak_rss_mb, finished.cpu_s) });

        for (shape, runs) in args.configs.iter().zip(&mut shapes) {
            eprintln!("pitwall run {shape} --exit-at-end{of}");
            let (row, broker_cpu_s) =
                with_broker_cpu(&broker, || run_shape(&kafka, &topic, shape, &format!("bench-{nonce}-{}-{round}", shape.slug()), &logs, &args))?;
            let row = Row { broker_cpu_s, ..row };
            if row.records != args.records as u64 {
                bail!("pitwall run {shape} processed {} records, expected {}", row.records, args.records);
            }
            runs.push(row);
        }
    }
    results.rows.extend(std::iter::once(ceilings).chain(shapes).filter_map(Row::median));

    for &rate in &args.rates {
        let wanted = ((rate as f64 * args.latency_seconds) as usize).clamp(1, records.len());
        eprintln!("latency at {rate} msg/s offered ({wanted} records, -w {})", args.latency_workers);
        let phase = latency::Phase {
            kafka: &kafka,
            broker: &broker,
            rate,
            workers: args.latency_workers,
            run_args: &args.run_args,
            nonce,
            logs: &logs,
            timeout: args.timeout(),
        };
        results.push(phase.run(&records[..wanted])?);
    }

    let written = results.write(&dir)?;
    println!("{}", results.markdown());
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `work` and returns what it returned with the CPU seconds the broker used meanwhile (0
/// where the harness cannot see the broker's process).
fn with_broker_cpu<T>(broker: &broker::Broker, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let before = broker.cpu_seconds();
    let value = work()?;
    let used = match (before, broker.cpu_seconds()) {
        (Some(before), Some(now)) => (now - before).max(0.0),
        _ => 0.0,
    };
    Ok((value, used))
}

/// `--records` rows of a generated race with `drivers` drivers, in time order.
pub(crate) fn race_records(records: usize, drivers: usize) -> Vec<TelemetryRecord> {
    let one_lap = Race::generate(&RaceConfig { drivers, laps: 1, seed: 11, inject_anomalies: true }).record_count().max(1);
    let laps = records.div_ceil(one_lap).max(1) as u32;
    let mut all = Race::generate(&RaceConfig { drivers, laps, seed: 11, inject_anomalies: true }).all_records();
    all.truncate(records);
    all
}

fn property_flags(kafka: &KafkaConfig) -> Vec<String> {
    let profile = match kafka.profile {
        pitwall_connectors::kafka::config::LatencyProfile::Throughput => "throughput",
        pitwall_connectors::kafka::config::LatencyProfile::Low => "low",
    };
    let properties = kafka.properties.iter().flat_map(|(k, v)| ["-X".to_string(), format!("{k}={v}")]);
    properties.chain(["--latency-profile".to_string(), profile.to_string()]).collect()
}

/// `pitwall run` with the benchmark's topics, as one process of `shape`; with a fixed
/// assignment (`--assignment static`) unless `extra` names one: a throughput run measures the
/// pipeline, not a group join (`bench group` measures those).
pub(crate) fn run_command(kafka: &KafkaConfig, topic: &str, alerts: &str, group: &str, workers: usize, extra: &[String]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the running binary"));
    command
        .args(["run", "--brokers", &kafka.brokers, "-w", &workers.to_string(), "--group", group, "--telemetry-topic", topic])
        .args(if extra.iter().any(|a| a == "--assignment") { &[][..] } else { &["--assignment", "static"][..] })
        .args(["--alerts-topic", alerts, "--windows-topic", "bench-windows", "--dlq-topic", "bench-dlq", "--late-topic", "bench-late"])
        .args(property_flags(kafka))
        .args(extra)
        .env("PITWALL_LOG", std::env::var("PITWALL_LOG").unwrap_or_else(|_| "warn".into()));
    command
}

/// One `pitwall run --exit-at-end` of every process of `shape`, measured.
fn run_shape(kafka: &KafkaConfig, topic: &str, shape: &ClusterShape, group: &str, logs: &Path, args: &ScalingArgs) -> Result<Row> {
    let timeout = args.timeout();
    let hostfile = logs.join(format!("hosts-{}.txt", shape.slug()));
    if shape.processes > 1 {
        broker::write_hostfile(&hostfile, shape.processes)?;
    }
    let mut children = Vec::new();
    for process in 0..shape.processes {
        let mut command = run_command(kafka, topic, "bench-alerts", group, shape.workers, &args.run_args);
        command.arg("--exit-at-end");
        if shape.processes > 1 {
            command.args(["-n", &shape.processes.to_string(), "-p", &process.to_string(), "-h"]).arg(&hostfile);
        }
        children.push(Measured::spawn(command, &format!("{group}-p{process}"), logs)?);
    }
    let started = Instant::now();
    let mut row = Row::run(shape);
    for child in children {
        let finished = child.finish(timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1)))?;
        let report = finished.report()?;
        row.records += report["records"].as_u64().context("report.records")?;
        row.seconds = row.seconds.max(report["seconds"].as_f64().context("report.seconds")?);
        row.peak_rss_mb += finished.peak_rss_mb;
        row.cpu_s += finished.cpu_s;
    }
    row.msg_per_s = row.records as f64 / row.seconds.max(1e-9);
    Ok(row)
}

/// What `pitwall bench ceiling` prints.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct CeilingReport {
    pub records: u64,
    pub undecodable: u64,
    pub seconds: f64,
    pub msg_per_s: f64,
}

/// The raw ceiling: one plain consumer that reads every message of the topic and JSON-decodes it.
pub fn ceiling(args: &CeilingArgs) -> Result<()> {
    let started = Instant::now();
    let policy = DecodePolicy::default();
    let (mut records, mut undecodable) = (0u64, 0u64);
    let read = read_topic(&args.kafka.config(), &args.topic, true, true, &AtomicBool::new(false), |message| {
        use rdkafka::Message;
        match decode_telemetry(message.key(), message.payload().unwrap_or_default(), &policy) {
            Ok(_) => records += 1,
            Err(_) => undecodable += 1,
        }
    })?;
    // Up to the last record decoded: the reader's end-of-input wait (it waits out a quiet period
    // before it believes the broker's end) and the consumer's close are not reading, and the
    // job's own figure stops at its last commit, before its clients close, too.
    let seconds = read.last_message.unwrap_or(started).duration_since(started).as_secs_f64();
    let report = CeilingReport { records, undecodable, seconds, msg_per_s: records as f64 / seconds.max(1e-9) };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
