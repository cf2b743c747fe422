//! Bad input never crashes a worker and never loses the good data around it: malformed JSON,
//! a wrong type, a NaN speed, a 2 MB message, an unknown driver, a key that disagrees with the
//! record, an empty message, a record years ahead and one jumping two days ahead of its partition,
//! interleaved with a race, all land in the DLQ with a reason, and the race's outputs equal those
//! of a clean run, with no record late.

mod support;

use std::time::Duration;

use pitwall_dataflows::decode::encode_telemetry;
use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::sim::{Race, RaceConfig};
use rdkafka::producer::{BaseProducer, Producer};
use support::*;

const PARTITIONS: i32 = 4;

fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    send_keyed(producer, topic, PARTITIONS, key, payload);
}

fn sorted_values(brokers: &str, topic: &str) -> Vec<String> {
    let mut values: Vec<String> = tail(brokers, topic).into_iter().map(|m| m["value"].to_string()).collect();
    values.sort();
    values
}

#[test]
fn bad_records_go_to_the_dlq_with_a_reason_and_good_ones_are_all_processed() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    create_topics(
        b,
        &[
            ("dirty", PARTITIONS),
            ("clean", PARTITIONS),
            ("pitwall-dlq", 1),
            ("pitwall-late", 1),
            ("alerts-dirty", 3),
            ("alerts-clean", 3),
            ("windows-dirty", 4),
            ("windows-clean", 4),
        ],
    );
    let race = Race::generate(&RaceConfig { drivers: 4, laps: 1, seed: 5, inject_anomalies: true });
    let producer = test_producer(b);

    let good = race.record_count();
    let mut huge = encode_telemetry(&race.drivers[0].1[0]);
    huge.truncate(huge.len() - 1);
    huge.extend(format!(r#","status":"{}"}}"#, "x".repeat(2 * 1024 * 1024)).bytes());
    let unknown =
        String::from_utf8(encode_telemetry(&pitwall_dataflows::records::TelemetryRecord { driver: "XYZ".into(), ..race.drivers[1].1[300].clone() }))
            .unwrap();
    use pitwall_dataflows::records::TelemetryRecord;
    let (years_ahead, jumper) = (&race.drivers[1], &race.drivers[2]);
    let far_future = encode_telemetry(&TelemetryRecord { session_time_ms: 9_000_000_000_000_000, ..years_ahead.1[300].clone() });
    // Two days ahead of its partition: within what decode accepts, past the jump bound (1 h).
    let jump = encode_telemetry(&TelemetryRecord { session_time_ms: jumper.1[300].session_time_ms + 2 * 86_400_000, ..jumper.1[300].clone() });
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (years_ahead.0.as_str(), far_future, "`session_time_ms` is 9000000000000000"),
        (jumper.0.as_str(), jump, "ahead of partition"),
        ("VER", b"{\"driver\": \"VER\", \"session_ti".to_vec(), "malformed JSON"),
        (
            "PER",
            br#"{"driver":"PER","session_time_ms":3600500,"rpm":"fast","speed":200,"gear":5,"throttle":100,"brake":false,"drs":0}"#.to_vec(),
            "wrong field type",
        ),
        (
            "HAM",
            br#"{"driver":"HAM","session_time_ms":3600500,"rpm":10000,"speed":NaN,"gear":5,"throttle":100,"brake":false,"drs":0}"#.to_vec(),
            "NaN",
        ),
        ("VER", huge, "exceeds the 65536-byte limit"),
        ("XYZ", unknown.into_bytes(), "unknown driver \"XYZ\""),
        ("RUS", encode_telemetry(&race.drivers[0].1[301]), "does not match"),
        ("HAM", Vec::new(), "malformed JSON"),
    ];
    // The clean topic gets the race in event-time order; the dirty one the same, with the bad records in the middle.
    let records = race.all_records();
    let middle = records.len() / 2;
    for topic in ["clean", "dirty"] {
        for (i, record) in records.iter().enumerate() {
            if i == middle && topic == "dirty" {
                for (key, payload, _) in &bad {
                    send(&producer, topic, key, payload);
                }
            }
            send(&producer, topic, &record.driver, &encode_telemetry(record));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let drivers = race.drivers.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(",");
    for topic in ["clean", "dirty"] {
        let report = run_to_end(b, topic, topic, topic, &["-w", "2", "--drivers", &drivers]);
        assert_eq!(report["records"].as_u64().unwrap() as usize, good, "{topic}: every good record processed: {report}");
        assert_eq!(report["dead_letters"].as_u64().unwrap() as usize, if topic == "dirty" { bad.len() } else { 0 }, "{topic}: {report}");
        assert_eq!(report["late"], 0, "{topic}: no good record turned late: {report}");
    }
    assert!(tail(b, "pitwall-late").is_empty(), "nothing in the late topic");

    let dead = tail(b, "pitwall-dlq");
    let source = tail(b, "dirty");
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for (key, payload, reason) in &bad {
        let letter = dead
            .iter()
            .map(|m| &m["value"])
            .find(|v| v["key"] == *key && v["payload_len"] == payload.len() && v["reason"].as_str().unwrap().contains(reason));
        let letter = letter.unwrap_or_else(|| panic!("no dead letter for {key} with {reason:?} in {dead:#?}"));
        assert_eq!(letter["topic"], "dirty");
        assert_eq!(letter["partition"], key_partition(key.as_bytes(), PARTITIONS));
        let original = source
            .iter()
            .find(|m| m["partition"] == letter["partition"] && m["offset"] == letter["offset"])
            .expect("the dead letter points at a message");
        assert_eq!(original["key"], *key, "partition/offset name the bad message itself");
        assert!(letter["payload_prefix"].as_str().unwrap().len() <= 1024, "the DLQ keeps a prefix, not 2 MB");
    }
    let alerts = sorted_values(b, "alerts-clean");
    assert!(!alerts.is_empty());
    assert_eq!(sorted_values(b, "alerts-dirty"), alerts, "alerts unaffected by the bad records");
    assert_eq!(sorted_values(b, "windows-dirty"), sorted_values(b, "windows-clean"), "windows unaffected by the bad records");
}
