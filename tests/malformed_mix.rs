//! Bad input at scale: 10,000 generated malformed telemetry messages (random bytes, truncated
//! JSON, wrong types, NaN/Infinity/overflowing numbers, out-of-range values, huge strings,
//! missing fields, bad driver ids, key/driver mismatches, empty messages) mixed at random
//! positions into a race. No worker crashes, every bad message is in `pitwall-dlq` with a reason
//! of its family, and the race's alerts and windows equal those of a clean run.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use pitwall_dataflows::decode::encode_telemetry;
use pitwall_dataflows::records::TelemetryRecord;
use pitwall_dataflows::sim::{Race, RaceConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::Producer;
use support::*;

const PARTITIONS: i32 = 4;
const BAD: usize = 10_000;

/// One malformed message: its key, payload, and the words its dead letter's reason must contain.
struct Bad {
    key: String,
    payload: Vec<u8>,
    reason: &'static str,
}

/// Replaces `"field":<number>` in a record's JSON with `"field":<text>`.
fn with_field(record: &TelemetryRecord, field: &str, text: &str) -> Vec<u8> {
    let json = String::from_utf8(encode_telemetry(record)).unwrap();
    let start = json.find(&format!("\"{field}\":")).unwrap_or_else(|| panic!("{field} in {json}")) + field.len() + 3;
    let end = start + json[start..].find([',', '}']).unwrap();
    format!("{}{text}{}", &json[..start], &json[end..]).into_bytes()
}

fn malformed(rng: &mut ChaCha8Rng, race: &[TelemetryRecord]) -> Bad {
    let record = &race[rng.random_range(0..race.len())];
    let key = record.driver.to_string();
    let bad = |key: String, payload: Vec<u8>, reason| Bad { key, payload, reason };
    match rng.random_range(0..11) {
        0 => {
            // Random bytes; the leading 0xFF can never start JSON.
            let mut payload = vec![0xFF];
            payload.extend((0..rng.random_range(0..300)).map(|_| rng.random::<u8>()));
            bad(key, payload, "malformed JSON")
        }
        1 => {
            let mut payload = encode_telemetry(record);
            payload.truncate(rng.random_range(1..payload.len() - 1));
            bad(key, payload, "malformed JSON")
        }
        2 => {
            let field = ["rpm", "speed", "gear", "throttle", "session_time_ms"][rng.random_range(0..5)];
            bad(key, with_field(record, field, "\"fast\""), "invalid type")
        }
        3 => {
            let field = ["rpm", "speed", "throttle", "x", "distance"][rng.random_range(0..5)];
            let text = ["NaN", "Infinity", "-Infinity"][rng.random_range(0..3)];
            bad(key, with_field(record, field, text), "NaN and Infinity")
        }
        4 => bad(key, with_field(record, "speed", "1e999"), "malformed JSON"),
        5 => {
            let (field, value) = [("speed", "-5.0"), ("rpm", "99999.0"), ("throttle", "250.0"), ("gear", "42")][rng.random_range(0..4)];
            bad(key, with_field(record, field, value), "outside the valid range")
        }
        6 => {
            // A status string that takes the message past the 64 KiB limit.
            let huge = format!("\"{}\"", "x".repeat(rng.random_range(70_000..200_000)));
            bad(key, with_field(record, "rpm", &format!("{},\"status\":{huge}", record.rpm)), "exceeds the 65536-byte limit")
        }
        7 => {
            let json = String::from_utf8(encode_telemetry(record)).unwrap();
            let without = json.replacen(&format!("\"gear\":{},", record.gear), "", 1);
            assert_ne!(without, json);
            bad(key, without.into_bytes(), "missing field")
        }
        8 => {
            let driver = ["", "TOOLONGDRIVERID", "V E R", "ДРВ"][rng.random_range(0..4)];
            let mut renamed = record.clone();
            renamed.driver = driver.into();
            bad(driver.to_string(), encode_telemetry(&renamed), "driver id")
        }
        9 => {
            let other = race.iter().find(|r| r.driver != record.driver).unwrap().driver.to_string();
            bad(other, encode_telemetry(record), "does not match")
        }
        _ => bad(key, Vec::new(), "malformed JSON"),
    }
}

#[test]
fn ten_thousand_malformed_messages_go_to_the_dlq_and_the_good_data_is_untouched() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    let mut topics = vec![("pitwall-dlq", 1), ("pitwall-late", 1)];
    for run in ["clean", "mixed"] {
        topics.extend([(run, PARTITIONS)]);
    }
    topics.extend([("alerts-clean", 3), ("alerts-mixed", 3), ("windows-clean", 4), ("windows-mixed", 4)]);
    create_topics(b, &topics);

    let records = Race::generate(&RaceConfig { drivers: 6, laps: 1, seed: 21, inject_anomalies: true }).all_records();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let bad: Vec<Bad> = (0..BAD).map(|_| malformed(&mut rng, &records)).collect();
    // Where each bad message goes: before good record number `slot`.
    let mut slots: Vec<usize> = (0..BAD).map(|_| rng.random_range(0..=records.len())).collect();
    slots.sort_unstable();

    let producer = test_producer(b);
    let mut next_bad = 0;
    for (i, record) in records.iter().enumerate() {
        send_record(&producer, "clean", PARTITIONS, record);
        while next_bad < BAD && slots[next_bad] == i {
            send_keyed(&producer, "mixed", PARTITIONS, &bad[next_bad].key, &bad[next_bad].payload);
            next_bad += 1;
        }
        send_record(&producer, "mixed", PARTITIONS, record);
    }
    for message in &bad[next_bad..] {
        send_keyed(&producer, "mixed", PARTITIONS, &message.key, &message.payload);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    for run in ["clean", "mixed"] {
        let report = run_to_end(b, run, run, run, &["-w", "2"]);
        assert_eq!(report["records"].as_u64(), Some(records.len() as u64), "{run}: every good record processed: {report}");
        assert_eq!(report["dead_letters"].as_u64(), Some(if run == "mixed" { BAD as u64 } else { 0 }), "{run}: {report}");
        assert_eq!(report["late"].as_u64(), Some(0), "{run}: bad messages never move the watermark: {report}");
    }

    // Every dead letter carries its family's reason; per family, the counts match what was sent.
    let dead = tail(b, "pitwall-dlq");
    assert_eq!(dead.len(), BAD);
    let mut sent: BTreeMap<&str, usize> = BTreeMap::new();
    bad.iter().for_each(|m| *sent.entry(m.reason).or_default() += 1);
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in &dead {
        let reason = letter["value"]["reason"].as_str().expect("a reason");
        // The family whose words the reason contains; "malformed JSON" prefixes several
        // (wrong type, missing field), so it counts only when nothing more specific matches.
        let family = sent
            .keys()
            .filter(|family| reason.contains(*family))
            .min_by_key(|family| **family == "malformed JSON")
            .unwrap_or_else(|| panic!("unexpected reason: {reason}"));
        *found.entry(family).or_default() += 1;
        assert!(letter["value"]["payload_prefix"].as_str().unwrap().len() <= 1024);
    }
    assert_eq!(found, sent, "dead letters per reason");
    assert!(sent.len() >= 8, "every family was generated: {sent:?}");

    let sorted = |topic: &str| {
        let mut values: Vec<String> = tail(b, topic).into_iter().map(|m| m["value"].to_string()).collect();
        values.sort();
        values
    };
    let alerts = sorted("alerts-clean");
    assert!(!alerts.is_empty());
    assert_eq!(sorted("alerts-mixed"), alerts, "alerts unaffected");
    assert_eq!(sorted("windows-mixed"), sorted("windows-clean"), "windows unaffected");
}
