//! Source semantics against a real broker: late records are published, never dropped, and
//! decided the same way at any batch size or worker count; a partition the broker reports caught
//! up does not hold back windows on the others (the delay is measured and printed); a partition
//! that reads ahead of the others is paused without changing any output.

mod support;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::records::TelemetryRecord;
use pitwall_dataflows::sim::{Race, RaceConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use support::*;

const PARTITIONS: i32 = 4;

fn send(producer: &BaseProducer, topic: &str, record: &TelemetryRecord) {
    send_record(producer, topic, PARTITIONS, record);
}

#[test]
fn late_records_are_published_with_how_late_they_were_at_any_batch_size() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    let race = Race::generate(&RaceConfig { drivers: 4, laps: 1, seed: 8, inject_anomalies: false });
    let mut topics = vec![("f1-telemetry", PARTITIONS), ("pitwall-dlq", 1)];
    let runs = ["w1", "w2b1"];
    let names: Vec<[String; 3]> = runs.iter().map(|r| [format!("alerts-{r}"), format!("windows-{r}"), format!("late-{r}")]).collect();
    for [a, w, l] in &names {
        topics.extend([(a.as_str(), 3), (w.as_str(), 4), (l.as_str(), 1)]);
    }
    create_topics(b, &topics);
    let producer = test_producer(b);
    let (driver, rows) = &race.drivers[0];
    // Everything in event-time order (the producer pool's contract), plus three copies of
    // earlier samples of one driver, sent right after its 300th, 350th and 450th sample.
    let mut late = Vec::new();
    for record in race.all_records() {
        send(&producer, "f1-telemetry", &record);
        if record.driver != *driver {
            continue;
        }
        let i = rows.iter().position(|r| r.session_time_ms == record.session_time_ms).unwrap();
        match i {
            // A copy of a sample 200 rows (~25 s) back: far behind the partition, late.
            300 | 450 => {
                send(&producer, "f1-telemetry", &rows[i - 200]);
                late.push(rows[i - 200].session_time_ms);
            }
            // A sample 2 rows back (~0.25 s): within the allowed 500 ms, processed as usual.
            350 => send(&producer, "f1-telemetry", &rows[i - 2]),
            _ => {}
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let total = race.record_count() + 3;

    let mut reported = Vec::new();
    for (run, extra) in runs.iter().zip([&["-w", "1"][..], &["-w", "2", "--max-poll-batch", "1"]]) {
        let [alerts, windows, late_topic] = &names[runs.iter().position(|r| r == run).unwrap()];
        let mut args = vec![
            "run",
            "--brokers",
            b,
            "--exit-at-end",
            "--group",
            run,
            "--alerts-topic",
            alerts,
            "--windows-topic",
            windows,
            "--late-topic",
            late_topic,
        ];
        args.extend_from_slice(extra);
        let report = run_report(&pitwall(&args));
        assert_eq!(report["late"], 2, "{run}: {report}");
        assert_eq!(report["records"].as_u64().unwrap() as usize, total - 2, "{run}: {report}");
        let published = tail(b, late_topic);
        let mut times: Vec<u64> = published.iter().map(|m| m["value"]["event_time_ms"].as_u64().unwrap()).collect();
        times.sort();
        assert_eq!(times, late, "{run}: the two copies far behind, not the one within the allowed lateness");
        for message in &published {
            let v = &message["value"];
            assert_eq!(v["key"], Value::String(driver.clone()));
            assert_eq!(v["partition"], key_partition(driver.as_bytes(), PARTITIONS));
            assert!(v["late_by_ms"].as_u64().unwrap() > 20_000, "{v}");
            let original: TelemetryRecord = serde_json::from_str(v["payload"].as_str().unwrap()).expect("the record is kept whole");
            assert_eq!(original.session_time_ms, v["event_time_ms"].as_u64().unwrap());
        }
        reported.push((tail(b, windows).len(), tail(b, alerts).len()));
    }
    assert_eq!(reported[0], reported[1], "same outputs at -w 1 and at -w 2 with batches of one");
}

/// Starts `pitwall run` (live, no exit-at-end) in the background and waits until both its
/// workers read; its stderr goes to `log`.
fn start_live(brokers: &str, group: &str, windows: &str, extra: &[&str], log: &std::path::Path) -> std::process::Child {
    let mut args = vec!["run", "--brokers", brokers, "-w", "2", "--group", group, "--windows-topic", windows];
    args.extend_from_slice(extra);
    let child = pitwall_command_logged(&args, log).stdout(Stdio::piped()).spawn().expect("spawn pitwall run");
    wait_for_sources(&[log], 2, Duration::from_secs(60));
    child
}

/// Reads `topic` from the start until `stop`, noting when each message arrived; `count` says
/// how many it has seen so far.
fn watch(
    brokers: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<Vec<(Instant, Value)>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "watch").set("fetch.wait.max.ms", "10").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..4 {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                seen.push((Instant::now(), serde_json::from_slice(message.payload().unwrap()).unwrap()));
                count.store(seen.len(), Ordering::Relaxed);
            }
        }
        seen
    })
}

/// Replays one driver per partition in real time x `SPEED`; the driver of partition `silent`
/// stops after one wall second. Returns the replay start, the first and the last event time sent.
fn replay_with_a_silent_partition(brokers: &str, rows: &[(String, Vec<TelemetryRecord>)], silent: usize) -> (Instant, u64, u64) {
    const SPEED: f64 = 4.0;
    const WALL: Duration = Duration::from_secs(6);
    let producer = test_producer(brokers);
    let mut all: Vec<(usize, &TelemetryRecord)> = rows.iter().enumerate().flat_map(|(i, (_, r))| r.iter().map(move |r| (i, r))).collect();
    all.sort_by_key(|(_, r)| r.session_time_ms);
    let t0 = all[0].1.session_time_ms;
    let start = Instant::now();
    let mut last = t0;
    for (driver, record) in all {
        let due = start + Duration::from_secs_f64((record.session_time_ms - t0) as f64 / 1_000.0 / SPEED);
        if due > start + WALL {
            break;
        }
        if driver == silent && due > start + Duration::from_secs(1) {
            continue;
        }
        pace_until(due);
        send(&producer, "f1-telemetry", record);
        last = record.session_time_ms;
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    (start, t0, last)
}

/// Wall-clock delays (ms) between the moment the replay reached a sliding window's end and the
/// window's arrival, for windows of `drivers` ending between `after_ms` of event time and what the
/// watermark could reach while the replay ran (`until_ms`).
fn window_delays(seen: &[(Instant, Value)], drivers: &[String], start: Instant, t0: u64, after_ms: u64, until_ms: u64) -> Vec<f64> {
    let mut delays: Vec<f64> = seen
        .iter()
        .filter(|(_, w)| w["window"]["type"] == "sliding" && drivers.iter().any(|d| w["driver"] == *d.as_str()))
        .filter(|(_, w)| (t0 + after_ms..=until_ms).contains(&w["end_ms"].as_u64().unwrap()))
        .map(|(at, w)| {
            let reached = start + Duration::from_secs_f64((w["end_ms"].as_u64().unwrap() - t0) as f64 / 1_000.0 / 4.0);
            at.saturating_duration_since(reached).as_secs_f64() * 1_000.0
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    delays
}

#[test]
fn a_partition_the_broker_reports_caught_up_does_not_hold_back_the_others() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    create_topics(
        b,
        &[("f1-telemetry", PARTITIONS), ("f1-alerts", 3), ("pitwall-dlq", 1), ("pitwall-late", 1), ("windows-eof", 4), ("windows-timeout", 4)],
    );
    // One driver per partition.
    let race = Race::generate(&RaceConfig { drivers: 20, laps: 1, seed: 2, inject_anomalies: false });
    let mut chosen: Vec<(String, Vec<TelemetryRecord>)> = Vec::new();
    for p in 0..PARTITIONS {
        let (driver, rows) = race.drivers.iter().find(|(d, _)| key_partition(d.as_bytes(), PARTITIONS) == p).expect("a driver for every partition");
        chosen.push((driver.clone(), rows.clone()));
    }
    let active: Vec<String> = chosen[1..].iter().map(|(d, _)| d.clone()).collect();

    let mut results = Vec::new();
    for (windows, extra) in [
        ("windows-eof", ["--idle-timeout-ms", "600000", "--eof-idle-ms", "200"]),
        ("windows-timeout", ["--idle-timeout-ms", "600000", "--eof-idle-ms", "600000"]),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let seen_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let watcher = watch(b, windows, stop.clone(), seen_count.clone());
        let dir = temp_dir();
        let log = dir.path().join("job.log");
        let child = start_live(b, windows, windows, &extra, &log);
        let (start, t0, last) = replay_with_a_silent_partition(b, &chosen, 0);
        // The scenario: the job stays live for 2 s after the replay (what idleness releases in
        // that time is what is measured), then stops.
        keep_running(Duration::from_secs(2));
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let output = wait_with_timeout(child, "pitwall run (live)", Duration::from_secs(60));
        assert!(output.status.success(), "SIGTERM drains and exits 0: {}", std::fs::read_to_string(&log).unwrap_or_default());
        // Every window the job published has reached the watcher.
        let published = tail(b, windows).len();
        wait_until("the watcher to see every published window", Duration::from_secs(30), || {
            let seen = seen_count.load(Ordering::Relaxed);
            holds(seen >= published, || format!("{seen} of {published}"))
        });
        stop.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        // Windows ending 8 s of event time after the start: the silent partition stopped at ~4 s.
        // The watermark trails the newest record by the allowed lateness (500 ms).
        results.push(window_delays(&seen, &active, start, t0, 8_000, last - 500));
    }
    let (eof, timeout_only) = (&results[0], &results[1]);
    assert!(eof.len() > 30, "windows of the active drivers closed: {}", eof.len());
    let pct = |d: &[f64], q: f64| d[((d.len() - 1) as f64 * q) as usize];
    println!(
        "idle-partition delay with broker-decided idleness: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms over {} windows; \
         without it (timeout only): p50 {:.0} ms over {} windows",
        pct(eof, 0.5),
        pct(eof, 0.95),
        pct(eof, 1.0),
        eof.len(),
        timeout_only.first().map_or(f64::NAN, |_| pct(timeout_only, 0.5)),
        timeout_only.len()
    );
    assert!(pct(eof, 1.0) < 2_000.0, "windows closed within 2 s of their end: {eof:?}");
    assert!(
        timeout_only.is_empty() || pct(timeout_only, 0.5) > 2_000.0,
        "without broker idleness they wait for the silent partition: {timeout_only:?}"
    );
}

/// Two processes (`-n 2 -w 1`) over a 2-partition topic whose second partition never carries a
/// record: process 1's only worker has nothing to read, and follows process 0's watermark
/// through the cluster-wide board (a timely broadcast), so windows close while the job runs
/// instead of waiting for its shutdown.
#[test]
fn a_process_whose_partitions_stay_empty_does_not_hold_live_windows_open() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    create_topics(b, &[("sparse", 2), ("alerts-sparse", 3), ("windows-sparse", 2), ("pitwall-dlq", 1), ("pitwall-late", 1)]);
    let race = Race::generate(&RaceConfig { drivers: 12, laps: 1, seed: 8, inject_anomalies: false });
    // Only drivers that land on partition 0.
    let records: Vec<TelemetryRecord> = race.all_records().into_iter().filter(|r| key_partition(r.driver.as_bytes(), 2) == 0).collect();
    assert!(!records.is_empty());
    let producer = test_producer(b);
    for record in &records {
        send_record(&producer, "sparse", 2, record);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = temp_dir();
    let hosts = path_str(&hostfile(dir.path(), "sparse.txt", 2));
    let processes: Vec<KillOnDrop> = (0..2)
        .map(|p| {
            let index = p.to_string();
            let args = [
                "run",
                "--brokers",
                b,
                "-n",
                "2",
                "-p",
                &index,
                "-h",
                &hosts,
                "--telemetry-topic",
                "sparse",
                "--group",
                "sparse",
                "--alerts-topic",
                "alerts-sparse",
                "--windows-topic",
                "windows-sparse",
            ];
            KillOnDrop(pitwall_command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
        })
        .collect();
    // Live: the job never ends by itself; windows must arrive while it runs.
    let windows =
        wait_until_every("live windows (process 1 must not hold the watermark)", Duration::from_secs(60), Duration::from_millis(500), || {
            let windows = tail(b, "windows-sparse");
            if windows.len() > 10 {
                Ok(windows)
            } else {
                Err(format!("{} so far", windows.len()))
            }
        });
    assert!(windows.iter().all(|w| key_partition(w["value"]["driver"].as_str().unwrap().as_bytes(), 2) == 0));
    drop(processes);
}

/// Replaying a backlog, a partition with one driver crosses the race five times faster than
/// one with five (reading is fair in records, not in event time); what it reads ahead waits in
/// the dataflow for the watermark. With a read-ahead bound the fast partition is paused instead:
/// the samples held at once shrink, and every output is the same.
#[test]
fn a_partition_that_reads_ahead_is_paused_and_no_output_changes() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    let race = Race::generate(&RaceConfig { drivers: 6, laps: 2, seed: 21, inject_anomalies: true });
    let runs = ["unbounded", "bounded"];
    let mut topics = vec![("skewed", 2), ("pitwall-dlq", 1), ("pitwall-late", 1)];
    let outputs: Vec<[String; 2]> = runs.iter().map(|r| [format!("alerts-{r}"), format!("windows-{r}")]).collect();
    for [a, w] in &outputs {
        topics.extend([(a.as_str(), 3), (w.as_str(), 2)]);
    }
    create_topics(b, &topics);
    let producer = test_producer(b);
    // The first driver alone on partition 0, the other five on partition 1.
    let lone = race.drivers[0].0.clone();
    for record in race.all_records() {
        let partition = if record.driver == lone { 0 } else { 1 };
        let payload = pitwall_dataflows::decode::encode_telemetry(&record);
        producer
            .send(rdkafka::producer::BaseRecord::to("skewed").key(record.driver.as_str()).partition(partition).payload(&payload))
            .expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut seen = Vec::new();
    for (run, ahead) in runs.iter().zip(["0", "10000"]) {
        // Small poll batches: the bound is checked once per batch.
        let report = run_to_end(b, "skewed", run, run, &["-w", "1", "--max-poll-batch", "50", "--max-read-ahead-ms", ahead]);
        assert_eq!(report["records"].as_u64().unwrap() as usize, race.record_count(), "{run}: {report}");
        assert_eq!((report["late"].as_u64(), report["skipped_offsets"].as_u64()), (Some(0), Some(0)), "{run}: {report}");
        let [alerts, windows] = &outputs[runs.iter().position(|r| r == run).unwrap()];
        let sorted = |topic: &str| {
            let mut values: Vec<String> = tail(b, topic).iter().map(|m| m["value"].to_string()).collect();
            values.sort();
            values
        };
        seen.push((report["held_peak"].as_u64().expect("held_peak in the report"), sorted(alerts), sorted(windows)));
    }
    let (unbounded, bounded) = (&seen[0], &seen[1]);
    assert!(!unbounded.1.is_empty() && !unbounded.2.is_empty(), "the race raises alerts and closes windows");
    assert_eq!(bounded.1, unbounded.1, "the same alerts");
    assert_eq!(bounded.2, unbounded.2, "the same windows");
    // Unbounded, the lone driver's partition (~1,400 samples) ends the race while the other is a
    // fifth of the way through: most of it waits. 10 s of the race is ~500 samples of all six.
    println!("samples held at most: {} unbounded, {} with a 10 s read-ahead", unbounded.0, bounded.0);
    assert!(unbounded.0 > 600, "the skew is there to bound: {}", unbounded.0);
    assert!(bounded.0 * 3 < unbounded.0, "held at most: {} bounded vs {} unbounded", bounded.0, unbounded.0);
}
