//! FireWatch end to end against real processes: a Tansu broker and an s3s-fs S3 server. Two
//! generated clips (one with fire, one without) are produced at once, a corrupt record is
//! slipped in, `pitwall run --pipelines video -w 2 --exit-at-end` runs, and the test checks
//! every output: detections per frame against the generator's truth, one completion per video,
//! both overlayed videos in the bucket (decoded back with FFmpeg), the DLQ, and the commits.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use pitwall_connectors::video::decode::{read_video, ReadOptions};
use serde_json::Value;
use support::*;

const BUCKET: &str = "firewatch";

fn truth_frames(path: &std::path::Path) -> (u64, Vec<(u64, u64)>) {
    let truth: Value = serde_json::from_slice(&std::fs::read(format!("{}.truth.json", path.display())).unwrap()).unwrap();
    let ranges = truth["fire_ranges"].as_array().unwrap().iter().map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap())).collect();
    (truth["frames"].as_u64().unwrap(), ranges)
}

#[test]
fn fire_and_calm_clips_are_detected_overlayed_and_stored_in_s3() {
    let tansu = start_tansu();
    let brokers = tansu.brokers.clone();
    let s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    let fire = dir.path().join("fire.mp4");
    let calm = dir.path().join("calm.mp4");
    pitwall(&["gen", "video", "--fire", "--seconds", "6", "--out", &path_str(&fire)]);
    pitwall(&["gen", "video", "--no-fire", "--seconds", "4", "--seed", "3", "--out", &path_str(&calm)]);
    let videos = [("fire-cam", &fire), ("calm-cam", &calm)];
    pitwall(&["topics", "create", "--brokers", &brokers]);

    // A truncated frame record of fire-cam, ahead of its real frames: it must go to the DLQ
    // with the reason, and cost no real frame.
    let producer = test_producer(&brokers);
    let mut truncated = pitwall_dataflows::video::frame::encode_frame(
        &pitwall_dataflows::video::frame::FrameHeader {
            video_id: "fire-cam".into(),
            frame_index: 0,
            pts_ms: 0,
            produced_at_ms: 1,
            width: 320,
            height: 180,
            fps_num: 25,
            fps_den: 1,
            total_frames: None,
        },
        &pitwall_dataflows::video::frame::RgbImage::new(320, 180),
    );
    truncated.truncate(5_000);
    send_keyed(&producer, "video-frames", 6, "fire-cam", &truncated);
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10)).unwrap();

    // Both videos produced at once, by two processes.
    let producers: Vec<_> = videos
        .iter()
        .map(|(id, file)| {
            pitwall_command(&["produce", "video", &path_str(file), "--id", id, "--brokers", &brokers, "--quiet"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn produce video")
        })
        .collect();
    for child in producers {
        let output = wait_with_timeout(child, "produce video", COMMAND_TIMEOUT);
        assert!(output.status.success(), "produce video failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    let spool = dir.path().join("spool");
    let mut run = pitwall_command(&["run", "--brokers", &brokers, "--pipelines", "video", "-w", "2", "--exit-at-end", "--spool", &path_str(&spool)]);
    run.envs(s3.client_env()).env("S3_BUCKET", BUCKET);
    let output = wait_with_timeout(run.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), "run video", COMMAND_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run failed: {stderr}");
    let report = run_report(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(report["videos"], 2, "{report}");
    assert_eq!(report["videos_stored"], 2, "{report}");

    // fire-detections: exactly one record per frame per video, scores matching the truth.
    let detections: Vec<Value> = tail(&brokers, "fire-detections").into_iter().map(|m| m["value"].clone()).collect();
    for (id, file) in videos {
        let (frames, ranges) = truth_frames(file);
        let mine: Vec<&Value> = detections.iter().filter(|d| d["video_id"] == id).collect();
        let indexes: BTreeSet<u64> = mine.iter().map(|d| d["frame_index"].as_u64().unwrap()).collect();
        assert_eq!(mine.len() as u64, frames, "{id}: one detection per frame");
        assert_eq!(indexes, (0..frames).collect(), "{id}: every frame index once");
        let burning = |i: u64| ranges.iter().any(|(a, b)| (*a..*b).contains(&i));
        let (fire, calm): (Vec<&&Value>, Vec<&&Value>) = mine.iter().partition(|d| burning(d["frame_index"].as_u64().unwrap()));
        let flagged = |ds: &[&&Value]| ds.iter().filter(|d| d["fire"] == true).count();
        if !fire.is_empty() {
            assert!(flagged(&fire) * 10 >= fire.len() * 9, "{id}: {} of {} fire frames flagged", flagged(&fire), fire.len());
        }
        assert!(flagged(&calm) * 20 <= calm.len(), "{id}: {} of {} frames without fire flagged", flagged(&calm), calm.len());
        assert!(mine.iter().all(|d| d["model"] == "fire_colour" && d["error"].is_null()));
        assert!(fire.iter().all(|d| !d["regions"].as_array().unwrap().is_empty()), "{id}: fire frames name their hot regions");
    }

    // video-completions: one per video, and each overlayed video is in the bucket, decodable,
    // with every frame at the input's size.
    let completions: Vec<Value> = tail(&brokers, "video-completions").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(completions.len(), 2, "{completions:?}");
    let by_id: BTreeMap<String, &Value> = completions.iter().map(|c| (c["video_id"].as_str().unwrap().to_string(), c)).collect();
    for (id, file) in videos {
        let (frames, ranges) = truth_frames(file);
        let c = by_id[id];
        let key = format!("videos/{id}_with_heatmaps.mp4");
        assert_eq!(c["key"], key.as_str());
        assert_eq!(c["location"], format!("s3://{BUCKET}/{key}").as_str(), "{c}");
        assert_eq!((c["frames"].as_u64(), c["expected_frames"].as_u64(), c["missing_frames"].as_u64()), (Some(frames), Some(frames), Some(0)));
        assert!(c["error"].is_null(), "{c}");
        let burning: u64 = ranges.iter().map(|(a, b)| b - a).sum();
        assert!(c["fire_frames"].as_u64().unwrap().abs_diff(burning) * 10 <= burning.max(10), "{id}: {c}");
        let object = s3.root.path().join(BUCKET).join(&key);
        assert!(object.is_file(), "{} is not in the bucket", object.display());
        let mut sizes = BTreeSet::new();
        let (info, decoded) = read_video(&object, ReadOptions::default(), |_, frame| -> Result<(), String> {
            sizes.insert((frame.image.width, frame.image.height));
            Ok(())
        })
        .unwrap();
        assert_eq!(decoded, frames, "{id}: frames in the overlayed video");
        assert_eq!(sizes, BTreeSet::from([(320, 180)]));
        assert_eq!(info.codec, "h264");
    }
    // Stored videos are removed from the spool folder.
    let spooled: Vec<_> = walk(&spool);
    assert!(spooled.is_empty(), "left in the spool: {spooled:?}");

    // The truncated record is in the DLQ with its reason and position; it cost nothing else.
    let dead: Vec<Value> = tail(&brokers, "pitwall-dlq").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["topic"], "video-frames");
    assert_eq!(dead[0]["key"], "fire-cam");
    assert_eq!(dead[0]["offset"], 0);
    assert!(dead[0]["reason"].as_str().unwrap().contains("truncated video record"), "{}", dead[0]);

    // Every partition's offsets are committed to the end (an independent client reads them).
    let offsets = committed_offsets(&brokers, "pitwall-video", "video-frames");
    for (partition, state) in offsets.as_object().unwrap() {
        let empty = state["end"] == 0 && state["committed"].is_null();
        assert!(empty || state["committed"] == state["end"], "partition {partition}: {offsets}");
    }
}

#[test]
fn corrupt_and_truncated_video_files_are_clear_errors() {
    let dir = temp_dir();
    let good = dir.path().join("good.mp4");
    pitwall(&["gen", "video", "--seconds", "2", "--out", &path_str(&good)]);
    let bytes = std::fs::read(&good).unwrap();
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, (0..50_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.path().join("missing.mp4");
    // No broker is reached: the file is refused before any frame is sent.
    for file in [&garbage, &truncated, &missing] {
        let output = pitwall_command(&["produce", "video", &path_str(file), "--brokers", "127.0.0.1:1", "--quiet"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} was accepted", file.display());
        assert!(stderr.contains(&path_str(file)), "the error names the file: {stderr}");
        assert!(stderr.contains("opening video") || stderr.contains("no frame"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
