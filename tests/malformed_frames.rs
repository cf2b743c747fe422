//! Bad video input at scale: 10,000 generated malformed `video-frames` records (random bytes,
//! truncations, wrong magic/version/kind/encoding, wrong-size bodies, zero and oversized
//! dimensions, trailing bytes, key mismatches, empty messages), keyed onto the same partitions as
//! a real clip. Nothing crashes, every bad record is in `pitwall-dlq` with a reason of its family,
//! and the clip still gets one detection per frame and exactly one completion.

mod support;

use std::collections::BTreeMap;

use pitwall_dataflows::video::frame::{encode_end, encode_frame, FrameHeader, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::Producer;
use serde_json::Value;
use support::*;

const BAD: usize = 10_000;
const PARTITIONS: i32 = 6;

fn header(id: &str, index: u64, width: u32, height: u32) -> FrameHeader {
    FrameHeader { video_id: id.into(), frame_index: index, pts_ms: 0, produced_at_ms: 1, width, height, fps_num: 25, fps_den: 1, total_frames: None }
}

/// A malformed record: key, payload, and the words its dead letter's reason must contain.
fn malformed(rng: &mut ChaCha8Rng) -> (String, Vec<u8>, &'static str) {
    // Half the bad records share the real clip's key (and so its partition).
    let id = if rng.random_bool(0.5) { "good-cam".to_string() } else { format!("cam-{}", rng.random_range(0..50)) };
    let good = encode_frame(&header(&id, rng.random_range(0..100), 4, 3), &RgbImage::new(4, 3));
    match rng.random_range(0..10) {
        0 => {
            // Random bytes after a 0xFF, which no record starts with.
            let payload: Vec<u8> = std::iter::once(0xFF).chain((0..rng.random_range(0..200)).map(|_| rng.random::<u8>())).collect();
            (id, payload, "not a video record|truncated")
        }
        1 => {
            let mut p = good;
            p.truncate(rng.random_range(1..p.len() - 1));
            (id, p, "truncated")
        }
        2 => {
            let mut p = good;
            p[0] = b'X';
            (id, p, "not a video record")
        }
        3 => {
            let mut p = good;
            p[4] = 9;
            (id, p, "unsupported video record version")
        }
        4 => {
            // A body of the wrong size for the frame's dimensions.
            let image = RgbImage { width: 4, height: 3, pixels: vec![0; rng.random_range(0..30)] };
            (id.clone(), encode_frame(&header(&id, 0, 4, 3), &image), "needs")
        }
        5 => {
            let dims = [(0, 3), (4, 0), (9_000, 2), (2, 100_000)][rng.random_range(0..4)];
            (id.clone(), encode_frame(&header(&id, 0, dims.0, dims.1), &RgbImage::new(0, 0)), "outside")
        }
        6 => {
            let mut p = good;
            p.extend((0..rng.random_range(1..20)).map(|_| rng.random::<u8>()));
            (id, p, "trailing bytes")
        }
        7 => ("someone-else".to_string(), good, "does not match video id"),
        8 => {
            let mut p = good;
            p[5] = rng.random_range(2..=255);
            (id, p, "unknown record kind")
        }
        _ => (id, Vec::new(), "truncated"),
    }
}

#[test]
fn ten_thousand_malformed_frame_records_go_to_the_dlq_and_the_clip_survives() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let dir = temp_dir();
    let clip = dir.path().join("good.mp4");
    pitwall(&["gen", "video", "--fire", "--seconds", "2", "--out", &path_str(&clip)]);
    pitwall(&["topics", "create", "--brokers", b]);

    let producer = test_producer(b);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut expected: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut send_bad = |count: usize, rng: &mut ChaCha8Rng| {
        for _ in 0..count {
            let (key, payload, reason) = malformed(rng);
            *expected.entry(reason).or_default() += 1;
            send_keyed(&producer, "video-frames", PARTITIONS, &key, &payload);
        }
        producer.flush(std::time::Duration::from_secs(30)).unwrap();
    };
    send_bad(BAD / 2, &mut rng);
    let produced = pitwall_command(&["produce", "video", &path_str(&clip), "--id", "good-cam", "--brokers", b, "--quiet"]).output().unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    send_bad(BAD / 2, &mut rng);
    // A stray end marker of a video that never had a frame: logged, nothing else.
    send_keyed(&producer, "video-frames", PARTITIONS, "ghost", &encode_end(&header("ghost", 0, 4, 3)));
    producer.flush(std::time::Duration::from_secs(30)).unwrap();

    let report = video_run_to_end(b, &dir.path().join("out"), &[]);
    assert_eq!(report["dead_letters"], BAD as u64, "{report}");

    let dead: Vec<Value> = tail(b, "pitwall-dlq").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(dead.len(), BAD);
    assert!(dead.iter().all(|d| d["topic"] == "video-frames" && d["offset"].as_i64().is_some() && d["payload_len"].as_u64().unwrap() <= 1_200));
    let mut families: BTreeMap<&'static str, usize> = BTreeMap::new();
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    for reason in &reasons {
        // The exact families first; the random-bytes family only names what is left.
        let matches = |f: &&&str| f.split('|').any(|w| reason.contains(w));
        let family = expected
            .keys()
            .filter(|f| !f.contains('|'))
            .find(matches)
            .or_else(|| expected.keys().find(matches))
            .unwrap_or_else(|| panic!("unexpected reason: {reason}"));
        *families.entry(family).or_default() += 1;
    }
    // Random bytes may land in any family; every other family is exact.
    for (family, count) in &expected {
        if !family.contains('|') {
            assert!(families.get(family).copied().unwrap_or(0) >= *count, "{family}: {families:?} vs {expected:?}");
        }
    }

    let detections: Vec<Value> = tail(b, "fire-detections").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(detections.len(), 50, "one detection per real frame");
    assert!(detections.iter().all(|d| d["video_id"] == "good-cam"));
    let completions: Vec<Value> = tail(b, "video-completions").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(
        (completions[0]["video_id"].as_str(), completions[0]["frames"].as_u64(), completions[0]["missing_frames"].as_u64()),
        (Some("good-cam"), Some(50), Some(0))
    );
}
