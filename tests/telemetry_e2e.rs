//! End to end through a real Kafka-protocol broker (Tansu): generated race -> topics -> produce
//! -> run -> alerts, windows, commits; and identical results across worker/process counts.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use serde_json::Value;
use support::*;

const SEVERITY_PARTITION: [(&str, i64); 3] = [("high", 0), ("medium", 1), ("low", 2)];

#[test]
fn alerts_recall_every_injected_anomaly_once_on_the_right_partition() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    let dir = temp_dir();
    let truth = gen_race(dir.path(), 20, 2, "csv");
    assert_eq!(truth.len(), 40);
    let topics = pitwall(&["topics", "create", "--brokers", b]);
    assert!(topics.contains("created f1-alerts (3 partitions)"), "{topics}");
    assert!(pitwall(&["topics", "create", "--brokers", b]).contains("exists  f1-telemetry (4 partitions)"), "idempotent");
    let fewer = pitwall(&["topics", "create", "--brokers", b, "--telemetry-partitions", "2"]);
    assert!(fewer.contains("exists  f1-telemetry (4 partitions; 2 asked, and a topic never shrinks)"), "{fewer}");
    // Growing asks the broker (CreatePartitions): Tansu 0.6 has no such request, and says so.
    let grow = pitwall_command(&["topics", "create", "--brokers", b, "--telemetry-partitions", "6"]).output().expect("run pitwall");
    let stderr = String::from_utf8_lossy(&grow.stderr);
    assert!(!grow.status.success() && stderr.contains("growing topic `f1-telemetry`") && stderr.contains("from 4 to 6 partitions"), "{stderr}");
    let produced = pitwall(&["produce", "telemetry", "--brokers", b, "--input", &path_str(dir.path()), "--max-rate", "--quiet"]);
    assert!(produced.contains("sent 24"), "{produced}");

    let report = run_report(&pitwall(&["run", "--brokers", b, "-w", "2", "--exit-at-end"]));
    let records = report["records"].as_u64().unwrap();
    assert!(records > 20_000, "{report}");
    assert_eq!(report["dead_letters"], 0, "{report}");

    let alerts = tail(b, "f1-alerts");
    let mut matched = vec![0; truth.len()];
    let mut unmatched = Vec::new();
    let mut ids = BTreeSet::new();
    for message in &alerts {
        let alert = &message["value"];
        let severity = alert["severity"].as_str().unwrap();
        let partition = SEVERITY_PARTITION.iter().find(|(s, _)| *s == severity).unwrap().1;
        assert_eq!(message["partition"].as_i64().unwrap(), partition, "{alert} on the wrong partition");
        assert!(ids.insert(alert["id"].as_str().unwrap().to_string()), "alert id repeated: {alert}");
        let time = alert["session_time_ms"].as_i64().unwrap();
        let hit = truth.iter().position(|t| {
            t["driver"] == alert["driver"]
                && t["kind"] == alert["kind"]
                && time + 1_000 >= t["start_ms"].as_i64().unwrap()
                && time <= t["end_ms"].as_i64().unwrap() + 1_000
        });
        match hit {
            Some(i) => matched[i] += 1,
            None => unmatched.push(alert.clone()),
        }
    }
    let missed: Vec<&Value> = truth.iter().zip(&matched).filter(|(_, m)| **m == 0).map(|(t, _)| t).collect();
    assert!(missed.is_empty(), "recall < 1: missed {missed:#?}");
    assert!(matched.iter().all(|m| *m == 1), "a condition was alerted twice: {matched:?}");
    assert!(unmatched.len() * 20 <= alerts.len(), "more than 5% of alerts match no injected anomaly: {unmatched:#?}");

    // Every window kind is there: one lap window per driver and lap, three sectors per lap.
    let windows = tail(b, "f1-windows");
    let count = |kind: &str| windows.iter().filter(|w| w["value"]["window"]["type"] == kind).count();
    assert_eq!(count("lap"), 40);
    assert_eq!(count("sector"), 120);
    assert!(count("sliding") > 20 * 140, "sliding windows: {}", count("sliding"));
    assert!(windows.iter().all(|w| w["key"] == w["value"]["driver"]), "windows are keyed by driver");

    // An independent client (kafka-python, not librdkafka) finds lag 0 on every partition:
    // the committed offset is the next offset to read, last processed + 1.
    let offsets = committed_offsets(b, "pitwall", "f1-telemetry");
    let partitions = offsets.as_object().unwrap();
    assert_eq!(partitions.len(), 4, "{offsets}");
    let mut total = 0;
    for (partition, view) in partitions {
        assert_eq!(view["committed"], view["end"], "partition {partition}: lag must be 0 ({offsets})");
        total += view["end"].as_u64().unwrap();
    }
    assert_eq!(total, records, "the ends cover every record processed");

    // Offsets were committed after the outputs: the same group has nothing left to read.
    let again = run_report(&pitwall(&["run", "--brokers", b, "-w", "1", "--exit-at-end"]));
    assert_eq!(again["messages"], 0, "{again}");
}

/// Sorted JSON of every alert and window in the run's output topics.
fn results(brokers: &str, alerts: &str, windows: &str) -> (Vec<String>, Vec<String>) {
    let sorted = |topic| {
        let mut values: Vec<String> = tail(brokers, topic)
            .into_iter()
            .map(|m| {
                let mut v = m["value"].clone();
                v.as_object_mut().unwrap().remove("produced_at_ms");
                v.to_string()
            })
            .collect();
        values.sort();
        values
    };
    (sorted(alerts), sorted(windows))
}

#[test]
fn results_are_identical_across_workers_processes_and_poll_batch_sizes() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    let dir = temp_dir();
    gen_race(dir.path(), 8, 2, "parquet");
    let mut topics = vec![("f1-telemetry", 4), ("pitwall-dlq", 1), ("pitwall-late", 1)];
    let names: Vec<(String, String)> = ["w1", "w4", "n2", "b1"].iter().map(|r| (format!("alerts-{r}"), format!("windows-{r}"))).collect();
    for (alerts, windows) in &names {
        topics.push((alerts, 3));
        topics.push((windows, 4));
    }
    create_topics(b, &topics);
    pitwall(&["produce", "telemetry", "--brokers", b, "--input", &path_str(dir.path()), "--max-rate", "--quiet", "--producers", "2"]);

    let run_args = |run: usize| -> Vec<String> {
        let (alerts, windows) = &names[run];
        ["run", "--brokers", b, "--exit-at-end", "--group", &format!("group-{run}"), "--alerts-topic", alerts, "--windows-topic", windows]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let as_str = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<&str>>().join(" ");
    let mut one = run_args(0);
    one.extend(["-w".into(), "1".into()]);
    pitwall(&one.iter().map(String::as_str).collect::<Vec<_>>());
    let mut four = run_args(1);
    four.extend(["-w", "4", "--max-poll-batch", "10000"].iter().map(|s| s.to_string()));
    pitwall(&four.iter().map(String::as_str).collect::<Vec<_>>());

    let mut batch_of_one = run_args(3);
    batch_of_one.extend(["-w", "2", "--max-poll-batch", "1"].iter().map(|s| s.to_string()));
    pitwall(&batch_of_one.iter().map(String::as_str).collect::<Vec<_>>());

    let hosts = hostfile(dir.path(), "hosts.txt", 2);
    let processes: Vec<_> = (0..2)
        .map(|p| {
            let mut args = run_args(2);
            args.extend(["-w", "1", "-n", "2", "-p", &p.to_string(), "-h", &path_str(&hosts)].iter().map(|s| s.to_string()));
            let what = as_str(&args);
            (
                what,
                pitwall_command(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            )
        })
        .collect();
    let mut total = 0;
    for (what, child) in processes {
        let output = wait_with_timeout(child, &what, COMMAND_TIMEOUT);
        assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
        total += run_report(&String::from_utf8_lossy(&output.stdout))["records"].as_u64().unwrap();
    }
    assert!(total > 9_000, "the two processes together read the topic: {total}");

    let w1 = results(b, &names[0].0, &names[0].1);
    assert!(!w1.0.is_empty() && w1.1.len() > 1_000, "non-trivial output");
    let by_kind: BTreeMap<String, usize> = w1.0.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(serde_json::from_str::<Value>(a).unwrap()["kind"].to_string()).or_default() += 1;
        m
    });
    assert!(by_kind.len() >= 4, "several alert kinds: {by_kind:?}");
    assert_eq!(results(b, &names[1].0, &names[1].1), w1, "-w 4 differs from -w 1");
    assert_eq!(results(b, &names[2].0, &names[2].1), w1, "-n 2 differs from -w 1");
    assert_eq!(results(b, &names[3].0, &names[3].1), w1, "poll batches of 1 record differ from batches of 4,096 and 10,000");
}
