//! A clean stop commits its offsets before it writes delivered-before mark 0: if the offset
//! commit then fails, the previous (offsets, mark) pair is left as it was, never mark 0 beside
//! older offsets (a restart would then replay from those offsets and re-send, partial, the
//! windows the crashed run had delivered). librdkafka's mock cluster fails the second offset
//! commit of the stop (the first goes through), as Tansu cannot be told to.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use pitwall::cli::Assignment;
use pitwall::commands::produce::produce_records;
use pitwall::job::{run_job, JobConfig};
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_dataflows::sim::{Race, RaceConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;
const GROUP: &str = "clean-stop";

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).set("enable.auto.commit", "false").create().expect("a consumer")
}

/// The committed offset of every partition of `f1-telemetry` in `group` (-1: none).
fn committed(brokers: &str, group: &str) -> Vec<i64> {
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition("f1-telemetry", p);
    }
    let found = consumer(brokers, group).committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| match found.find_partition("f1-telemetry", p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

fn commit(brokers: &str, group: &str, offsets: &[i64]) {
    let mut list = TopicPartitionList::new();
    for (p, offset) in offsets.iter().enumerate() {
        list.add_partition_offset("f1-telemetry", p as i32, Offset::Offset(*offset)).unwrap();
    }
    consumer(brokers, group).commit(&list, CommitMode::Sync).expect("seeding a commit");
}

#[test]
fn a_failed_offset_commit_at_a_clean_stop_never_leaves_mark_0_beside_older_offsets() {
    let cluster = MockCluster::new(1).expect("the mock cluster");
    for (topic, partitions) in [("f1-telemetry", PARTITIONS), ("f1-alerts", 3), ("f1-windows", PARTITIONS), ("pitwall-dlq", 1), ("pitwall-late", 1)] {
        cluster.create_topic(topic, partitions, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let kafka = KafkaConfig::new(brokers.clone());
    let race = Race::generate(&RaceConfig { drivers: 4, laps: 1, seed: 8, inject_anomalies: false });
    let sent =
        produce_records(&kafka, "f1-telemetry", race.all_records(), &ReplayConfig { speed: None, producers: 1, stop: None, metrics: None }, true)
            .unwrap();
    assert_eq!(sent.sent as usize, race.record_count());
    let ends: Vec<i64> =
        (0..PARTITIONS).map(|p| consumer(&brokers, GROUP).fetch_watermarks("f1-telemetry", p, Duration::from_secs(10)).unwrap().1).collect();

    // What a crashed run left: offsets halfway, and its delivered-before mark (10 s into the race).
    let halfway: Vec<i64> = ends.iter().map(|e| e / 2).collect();
    let mark = race.all_records()[0].session_time_ms as i64 + 10_000;
    commit(&brokers, GROUP, &halfway);
    commit(&brokers, &format!("{GROUP}.delivered-before"), &[mark; PARTITIONS as usize]);

    // The restarted job reads to the end and stops cleanly; of its two final commits (one worker:
    // offsets and marks), the first goes through and the second fails for good.
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR, RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE],
    );
    let mut config = JobConfig::new(kafka.clone());
    config.dataflow.group = GROUP.into();
    // Static: the injected answers follow a static job's commits (a group member commits more,
    // and its failed final commit is a warning; the commit order is the same code).
    config.dataflow.assignment = Assignment::Static;
    // Only the final commit: none while running.
    config.dataflow.commit_interval_ms = 3_600_000;
    config.exit_at_end = true;
    let stopped = run_job(config.clone(), timely::Config::thread(), Arc::new(AtomicBool::new(false)));
    assert!(stopped.is_err(), "a failed final commit is the job's error, not a silent success");

    let (offsets, marks) = (committed(&brokers, GROUP), committed(&brokers, &format!("{GROUP}.delivered-before")));
    println!("ends {ends:?}, offsets {offsets:?}, marks {marks:?}");
    for p in 0..PARTITIONS as usize {
        assert!(
            offsets[p] >= ends[p] || marks[p] > 0,
            "partition {p}: offset {} (end {}) beside mark {}: a restart would re-send what the crashed run delivered",
            offsets[p],
            ends[p],
            marks[p]
        );
    }

    // With the broker answering again, the next clean stop completes: offsets at the end, mark 0.
    let report = run_job(config, timely::Config::thread(), Arc::new(AtomicBool::new(false))).expect("a clean stop");
    assert_eq!(committed(&brokers, GROUP), ends, "{report:?}");
    assert_eq!(committed(&brokers, &format!("{GROUP}.delivered-before")), vec![0; PARTITIONS as usize]);
}
