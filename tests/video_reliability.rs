//! The video pipeline through a crash, a SIGTERM and an S3 outage, against real processes (a
//! Tansu broker, an s3s-fs S3 server): no video is lost, none is stored from its tail, and no
//! video's frames are committed before the video is stored.
//!
//! - SIGKILL with four clips in flight (and one short clip stored before it), then a restart
//!   with `--exit-at-end`: every clip stored whole at its key, one good completion each; the
//!   clip stored before the kill is not stored again. Before the assembly timed a video by its
//!   first frame's event time, a restart stamped the replayed clips with its first batch's time
//!   (0), which is before the mark the killed run committed on the short clip's partition: the
//!   two long clips there were dropped as "stored before the crash" and never stored.
//! - SIGTERM 8 s into a live clip: the job exits within seconds (it waited for the 300 s idle
//!   timeout before) leaving the clip's frames uncommitted; the restart stores it whole.
//! - Group hand-overs: an instance leaving cleanly (SIGTERM) with videos in flight, and an
//!   instance SIGKILLed with videos in flight (mock cluster: Tansu 0.6 leaves a dead member's
//!   partitions unowned): the other instance stores every video once, whole, one completion each.
//! - S3 down longer than `--s3-degraded-after-s`: `/health` says degraded, no completion, no
//!   commit past the clip; S3 back: stored, announced, committed. S3 refusing the credentials
//!   (403): the job stops with the reason and the clip's frames uncommitted; with the right
//!   credentials the next run stores it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pitwall_connectors::video::decode::{read_video, ReadOptions};
use pitwall_dataflows::partition::key_partition;
use serde_json::Value;
use support::*;

const BUCKET: &str = "firewatch";
/// Frames per second of the generated clips.
const FPS: u64 = 25;

/// A generated clip of `seconds` at 160x90 (small frames: the test is about delivery).
fn clip(dir: &Path, name: &str, seconds: u64, seed: u64) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    let seconds = seconds.to_string();
    let seed = seed.to_string();
    pitwall(&["gen", "video", "--no-fire", "--seconds", &seconds, "--seed", &seed, "--width", "160", "--height", "90", "--out", &path_str(&path)]);
    path
}

/// `produce video --realtime` of `file` as `id`, running.
fn produce_live(b: &str, file: &Path, id: &str) -> Child {
    pitwall_command(&["produce", "video", &path_str(file), "--id", id, "--brokers", b, "--realtime", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn produce video")
}

fn finish_producing(child: Child) {
    let output = wait_with_timeout(child, "produce video", COMMAND_TIMEOUT);
    assert!(output.status.success(), "produce video failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The video job (`-w 2` unless `extra` gives `-w`), live unless `extra` says `--exit-at-end`,
/// storing in `s3`'s bucket.
fn video_job(b: &str, s3: &S3Server, spool: &Path, extra: &[&str]) -> std::process::Command {
    let spool = path_str(spool);
    let mut args = vec!["run", "--brokers", b, "--pipelines", "video", "--spool", &spool];
    if !extra.contains(&"-w") {
        args.extend(["-w", "2"]);
    }
    args.extend_from_slice(extra);
    let mut command = pitwall_command(&args);
    command.envs(s3.client_env()).env("S3_BUCKET", BUCKET).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Every completion published, by video id.
fn completions(b: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for message in tail(b, "video-completions") {
        let value = message["value"].clone();
        by_id.entry(value["video_id"].as_str().unwrap().to_string()).or_default().push(value);
    }
    by_id
}

/// `pitwall group describe --pipeline video --json`: per partition, committed offset, log end
/// and delivered-before mark.
fn describe(b: &str) -> Vec<Value> {
    let described = pitwall(&["group", "describe", "--brokers", b, "--pipeline", "video", "--json"]);
    let described: Value = serde_json::from_str(&described).unwrap_or_else(|e| panic!("group describe prints JSON ({e}): {described}"));
    described["partitions"].as_array().expect("partitions listed").clone()
}

/// Asserts `id` was stored whole: one good completion with every frame, and the object in the
/// bucket decodes to `frames` frames.
fn assert_stored_whole(s3: &S3Server, completions: &[Value], id: &str, frames: u64) {
    let good: Vec<&Value> = completions.iter().filter(|c| c["error"].is_null()).collect();
    assert!(!good.is_empty(), "{id}: no good completion: {completions:?}");
    for c in &good {
        assert_eq!(
            (c["frames"].as_u64(), c["expected_frames"].as_u64(), c["missing_frames"].as_u64(), c["first_frame"].as_u64()),
            (Some(frames), Some(frames), Some(0), Some(0)),
            "{id}: {c}"
        );
        assert!(c["incomplete"].is_null(), "{id}: {c}");
        assert_eq!(c["key"], format!("videos/{id}_with_heatmaps.mp4").as_str());
    }
    assert_eq!(good.len(), completions.len(), "{id}: a completion with an error: {completions:?}");
    let object = s3.root.path().join(BUCKET).join(format!("videos/{id}_with_heatmaps.mp4"));
    let (_, decoded) = read_video(&object, ReadOptions::default(), |_, _| -> Result<(), String> { Ok(()) })
        .unwrap_or_else(|e| panic!("{id}: {} does not decode: {e}", object.display()));
    assert_eq!(decoded, frames, "{id}: frames in the stored video");
}

fn kill(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal}");
}

#[test]
fn a_video_job_killed_with_videos_in_flight_stores_every_video_whole_after_a_restart() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    pitwall(&["topics", "create", "--brokers", b]);
    let short = clip(dir.path(), "short", 3, 1);
    let long: Vec<std::path::PathBuf> = (0..4).map(|i| clip(dir.path(), &format!("long-{i}"), 20, 10 + i)).collect();
    // Two long clips share the short clip's partition (whose commits after it was stored leave a
    // mark there), two do not: ids chosen by the producer's partitioner (murmur2, 6 partitions).
    let short_partition = key_partition(b"short", 6);
    let ids: Vec<String> = (0..4)
        .map(|i| {
            (0..)
                .map(|n| format!("long-{i}-{n}"))
                .find(|id| (key_partition(id.as_bytes(), 6) == short_partition) == (i < 2))
                .expect("some id lands on each side")
        })
        .collect();

    // The job is live before any frame: a video's first frames come in a batch timed by the
    // watermark, and with 2 s of allowed lateness the watermark follows the frames closely.
    let job = video_job(b, &s3, &dir.path().join("spool-1"), &["--video-lateness-ms", "2000", "--commit-interval-ms", "200"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    finish_producing(produce_live(b, &short, "short"));
    wait_until("the short clip to be stored", Duration::from_secs(60), || {
        let stored = completions(b);
        holds(stored.contains_key("short"), || format!("{stored:?}"))
    });
    // Four 20 s clips, live, at once; killed 8 s in, each in flight.
    let producers: Vec<Child> = long.iter().zip(&ids).map(|(file, id)| produce_live(b, file, id)).collect();
    std::thread::sleep(Duration::from_secs(8));
    let marks: Vec<u64> = describe(b).iter().map(|p| p["delivered_before"].as_u64().unwrap_or(0)).collect();
    kill(&job, "-KILL");
    let killed = wait_with_timeout(job, "the killed job", COMMAND_TIMEOUT);
    assert!(!killed.status.success());
    assert!(marks[short_partition as usize] > 0, "the killed run committed a delivered-before mark after the short clip: {marks:?}");
    let before = completions(b);
    assert!(!before.keys().any(|id| id.starts_with("long-")), "no long clip was complete at the kill: {before:?}");
    producers.into_iter().for_each(finish_producing);

    let output = wait_with_timeout(
        video_job(b, &s3, &dir.path().join("spool-2"), &["--video-lateness-ms", "2000", "--exit-at-end"]).spawn().unwrap(),
        "the restarted job",
        COMMAND_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "restart failed: {stderr}");
    let report = run_report(&String::from_utf8_lossy(&output.stdout));
    println!("restart: {report}\nmarks at the kill: {marks:?}");
    assert_eq!((report["videos_stored"].as_u64(), report["videos_unfinished"].as_u64()), (Some(4), Some(0)), "{report}\n{stderr}");
    let after = completions(b);
    for id in &ids {
        assert_stored_whole(&s3, after.get(id).map_or(&[][..], Vec::as_slice), id, 20 * FPS);
    }
    assert_stored_whole(&s3, &after["short"], "short", 3 * FPS);
    assert_eq!(after["short"].len(), 1, "the clip stored before the kill is not stored again");
    // Everything read is committed at the end: every frame and end marker of the five clips
    // (Tansu's listed log ends trail a batching producer, so the count is the check).
    let committed: i64 = describe(b).iter().map(|p| p["committed"].as_i64().unwrap_or(0)).sum();
    assert_eq!(committed, (3 * FPS + 1 + 4 * (20 * FPS + 1)) as i64);
}

#[test]
fn sigterm_with_a_video_in_flight_stops_in_seconds_and_the_restart_stores_it_whole() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    pitwall(&["topics", "create", "--brokers", b]);
    let file = clip(dir.path(), "cam", 20, 5);
    let job = video_job(b, &s3, &dir.path().join("spool-1"), &[]).spawn().unwrap();
    let producer = produce_live(b, &file, "cam");
    // 8 s into the 20 s clip.
    std::thread::sleep(Duration::from_secs(8));
    let asked = Instant::now();
    kill(&job, "-TERM");
    let output = wait_with_timeout(job, "the job after SIGTERM", COMMAND_TIMEOUT);
    let took = asked.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SIGTERM ends in exit 0: {stderr}");
    assert!(took < Duration::from_secs(15), "stopped {took:?} after SIGTERM: {stderr}");
    let report = run_report(&String::from_utf8_lossy(&output.stdout));
    assert_eq!((report["videos"].as_u64(), report["videos_unfinished"].as_u64()), (Some(0), Some(1)), "{report}\n{stderr}\n{:?}", completions(b));
    assert!(completions(b).is_empty(), "nothing announced for an unfinished video");
    // Its partition holds only this clip: nothing of it is committed.
    for p in describe(b) {
        assert_eq!(p["committed"].as_i64().unwrap_or(0), 0, "the clip's frames stay uncommitted: {p}");
    }
    finish_producing(producer);

    let output = wait_with_timeout(video_job(b, &s3, &dir.path().join("spool-2"), &["--exit-at-end"]).spawn().unwrap(), "restart", COMMAND_TIMEOUT);
    assert!(output.status.success(), "restart failed: {}", String::from_utf8_lossy(&output.stderr));
    let after = completions(b);
    assert_stored_whole(&s3, &after["cam"], "cam", 20 * FPS);
    println!("SIGTERM to exit: {took:?}");
}

#[test]
fn s3_down_past_the_limit_degrades_health_and_refused_credentials_stop_the_job_losing_no_video() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let mut s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    pitwall(&["topics", "create", "--brokers", b]);
    let first = clip(dir.path(), "first", 4, 3);
    let second = clip(dir.path(), "second", 4, 4);
    let port = free_port().to_string();
    let bridge = format!("127.0.0.1:{port}");
    // No allowed lateness: the watermark is at the newest frame, so a stored video's frames
    // commit at once (all but the newest record) and only the hold of one not stored stops them.
    let job = video_job(b, &s3, &dir.path().join("spool-1"), &["--s3-degraded-after-s", "2", "--bridge", &bridge, "--video-lateness-ms", "0"])
        .spawn()
        .unwrap();
    wait_listening(&bridge, Duration::from_secs(60));
    s3.stop();
    pitwall(&["produce", "video", &path_str(&first), "--id", "first", "--brokers", b, "--quiet"]);
    // Down for well past the limit: degraded, retrying, nothing announced or committed.
    let health = wait_until("/health to report the failing uploads", Duration::from_secs(90), || {
        let (_, body) = http_get(&bridge, "/health");
        holds(body.contains("degraded") && body.contains("storing videos"), || body.clone()).map(|_| body.clone())
    });
    println!("health during the outage: {health}");
    std::thread::sleep(Duration::from_secs(6));
    assert!(completions(b).is_empty(), "no completion while the video is not stored");
    let during: Vec<Value> = describe(b);
    assert!(during.iter().all(|p| p["committed"].as_i64().unwrap_or(0) == 0), "nothing committed before the video is stored: {during:?}");
    s3.restart();
    wait_until("the video to be stored once S3 is back", Duration::from_secs(60), || {
        let done = completions(b);
        holds(done.contains_key("first"), || format!("{done:?}"))
    });
    assert_stored_whole(&s3, &completions(b)["first"], "first", 4 * FPS);
    wait_until("/health to recover", Duration::from_secs(30), || {
        let (_, body) = http_get(&bridge, "/health");
        holds(body.contains("\"ok\""), || body.clone())
    });
    // Its frames are committed now (those produced in the newest millisecond wait for a newer
    // record: the watermark is at them).
    wait_until("the stored video's frames to be committed", Duration::from_secs(30), || {
        let parts = describe(b);
        let committed: i64 = parts.iter().map(|p| p["committed"].as_i64().unwrap_or(0)).sum();
        holds(committed >= (3 * FPS) as i64, || format!("{parts:?}"))
    });

    // S3 back with other credentials: the upload is refused for good (403) and the job stops.
    s3.restart_with_keys("someone-else", "another-secret-key");
    pitwall(&["produce", "video", &path_str(&second), "--id", "second", "--brokers", b, "--quiet"]);
    let output = wait_with_timeout(job, "the job refused by S3", COMMAND_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a refused upload fails the job: {stderr}");
    assert!(stderr.contains("403") && stderr.contains("second"), "the reason and the video are named: {stderr}");
    assert!(!completions(b).contains_key("second"));
    // The first clip's records at most (its end marker may now be): none of the second's.
    let parts = describe(b);
    let committed: i64 = parts.iter().map(|p| p["committed"].as_i64().unwrap_or(0)).sum();
    assert!(committed <= (4 * FPS + 1) as i64, "the refused video's frames stay uncommitted: {parts:?}");
    // The right credentials again: the next run stores it.
    s3.stop();
    s3.restart();
    let output = wait_with_timeout(video_job(b, &s3, &dir.path().join("spool-2"), &["--exit-at-end"]).spawn().unwrap(), "rerun", COMMAND_TIMEOUT);
    assert!(output.status.success(), "rerun failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_stored_whole(&s3, &completions(b)["second"], "second", 4 * FPS);
}

/// Ids whose partitions (murmur2 over `partitions`) are 0, 1, 2, ... `count - 1`: one video per
/// partition, so both instances of a group hold some.
fn one_id_per_partition(prefix: &str, count: i32, partitions: i32) -> Vec<String> {
    (0..count)
        .map(|p| (0..).map(|n| format!("{prefix}-{n}")).find(|id| key_partition(id.as_bytes(), partitions) == p).expect("an id for each partition"))
        .collect()
}

/// One instance (`-w 1`) of the shared video group, its stderr (with its assignments) in
/// `<dir>/<name>.log`, storing in `s3`'s bucket.
fn start_group_member(b: &str, s3: &S3Server, dir: &Path, name: &str) -> (Child, std::path::PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let mut command = video_job(b, s3, &dir.join(format!("spool-{name}")), &["-w", "1", "--assignment", "group"]);
    command.env("PITWALL_LOG", format!("{SOURCE_LOG},pitwall_connectors::kafka::group=info")).stderr(std::fs::File::create(&log).unwrap());
    (command.spawn().unwrap(), log)
}

/// Waits until each instance's latest assignment holds partitions.
fn wait_until_each_holds_partitions(logs: &[&Path]) {
    wait_until("every instance to hold partitions", Duration::from_secs(60), || {
        let latest: Vec<Vec<i32>> = logs.iter().map(|log| partitions_of(&assignments(log).1)).collect();
        holds(latest.iter().all(|p| !p.is_empty()), || format!("latest assignments {latest:?}"))
    });
}

#[test]
fn videos_in_flight_on_an_instance_leaving_its_group_are_stored_once_whole_by_the_other() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    pitwall(&["topics", "create", "--brokers", b]);
    let ids = one_id_per_partition("cam", 4, 6);
    let files: Vec<std::path::PathBuf> = (0..4).map(|i| clip(dir.path(), &format!("clip-{i}"), 12, 20 + i as u64)).collect();
    // Two instances of one video group, -w 1 each, logging their assignments. The default video
    // lateness (60 s): with 2 s, the re-read backlog after the take-over delayed some frames
    // of a partition more than 2 s behind the others on this 2-core machine (16 of 1,486
    // judged late in one of three runs).
    let (leaver, leaver_log) = start_group_member(b, &s3, dir.path(), "leaver");
    let (stayer, stayer_log) = start_group_member(b, &s3, dir.path(), "stayer");
    wait_until_each_holds_partitions(&[&leaver_log, &stayer_log]);
    let producers: Vec<Child> = files.iter().zip(&ids).map(|(file, id)| produce_live(b, file, id)).collect();
    std::thread::sleep(Duration::from_secs(5));
    let asked = Instant::now();
    kill(&leaver, "-TERM");
    let left = wait_with_timeout(leaver, "the leaving instance", COMMAND_TIMEOUT);
    let took = asked.elapsed();
    let leaver_text = std::fs::read_to_string(&leaver_log).unwrap_or_default();
    assert!(left.status.success(), "a clean leave exits 0: {leaver_text}");
    let leaver_report = run_report(&String::from_utf8_lossy(&left.stdout));
    assert!(leaver_report["videos_unfinished"].as_u64() >= Some(1), "the leaver held a video in flight: {leaver_report}");
    assert_eq!(leaver_report["videos"], 0, "nothing of a video in flight is announced by the leaver: {leaver_report}");
    producers.into_iter().for_each(finish_producing);
    wait_until("every video to be stored by the instance that stayed", Duration::from_secs(90), || {
        let done = completions(b);
        holds(ids.iter().all(|id| done.contains_key(id)), || format!("{:?}", done.keys().collect::<Vec<_>>()))
    });
    kill(&stayer, "-TERM");
    let stayed = wait_with_timeout(stayer, "the instance that stayed", COMMAND_TIMEOUT);
    let stayer_text = std::fs::read_to_string(&stayer_log).unwrap_or_default();
    assert!(stayed.status.success(), "{stayer_text}");
    let stayer_report = run_report(&String::from_utf8_lossy(&stayed.stdout));
    let late = tail(b, "pitwall-late").len();
    println!("stayer: {stayer_report}; late frames: {late}\n{stayer_text}");
    assert_eq!((late, stayer_report["skipped_offsets"].as_u64()), (0, Some(0)), "no frame late or skipped: {stayer_report}\n{stayer_text}");
    let after = completions(b);
    for id in &ids {
        let mine = &after[id];
        assert_eq!(mine.len(), 1, "{id}: announced once: {mine:?}");
        assert_stored_whole(&s3, mine, id, 12 * FPS);
    }
    println!("leaver stopped {took:?} after SIGTERM: {leaver_report}");
}

#[test]
fn a_video_in_flight_on_a_killed_instance_is_stored_once_whole_by_its_new_owner() {
    // librdkafka's mock cluster: Tansu 0.6 leaves a dead member's partitions unowned (README
    // "Scaling out"). It keeps 5 MiB per partition: small frames (64x36, 10 s).
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("the mock cluster");
    let brokers = cluster.bootstrap_servers();
    let b = brokers.as_str();
    let s3 = S3Server::start(&[BUCKET]);
    let dir = temp_dir();
    for (topic, partitions) in [("video-frames", 6), ("fire-detections", 6), ("video-completions", 3), ("pitwall-dlq", 1), ("pitwall-late", 1)] {
        cluster.create_topic(topic, partitions, 1).expect("a mock topic");
    }
    let ids = one_id_per_partition("cam", 4, 6);
    let files: Vec<std::path::PathBuf> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("clip-{i}.mp4"));
            let seed = (30 + i).to_string();
            pitwall(&["gen", "video", "--no-fire", "--seconds", "10", "--seed", &seed, "--width", "64", "--height", "36", "--out", &path_str(&path)]);
            path
        })
        .collect();
    let (victim, victim_log) = start_group_member(b, &s3, dir.path(), "victim");
    let (survivor, survivor_log) = start_group_member(b, &s3, dir.path(), "survivor");
    wait_until_each_holds_partitions(&[&victim_log, &survivor_log]);
    // The victim holds a partition with a video on it (ids are on partitions 0..4).
    let held = partitions_of(&assignments(&victim_log).1);
    assert!(held.iter().any(|p| *p < 4), "the victim reads a partition with a video: {held:?}");
    let producers: Vec<Child> = files.iter().zip(&ids).map(|(file, id)| produce_live(b, file, id)).collect();
    std::thread::sleep(Duration::from_secs(4));
    kill(&victim, "-KILL");
    let _ = wait_with_timeout(victim, "the killed instance", COMMAND_TIMEOUT);
    assert!(completions(b).is_empty(), "no video was complete at the kill");
    producers.into_iter().for_each(finish_producing);
    wait_until("every video to be stored by the survivor", Duration::from_secs(90), || {
        let done = completions(b);
        holds(ids.iter().all(|id| done.contains_key(id)), || {
            format!("{:?}; survivor: {:?}", done.keys().collect::<Vec<_>>(), assignments(&survivor_log).1)
        })
    });
    kill(&survivor, "-TERM");
    let stayed = wait_with_timeout(survivor, "the survivor", COMMAND_TIMEOUT);
    assert!(stayed.status.success(), "{}", std::fs::read_to_string(&survivor_log).unwrap_or_default());
    let report = run_report(&String::from_utf8_lossy(&stayed.stdout));
    assert_eq!((tail(b, "pitwall-late").len(), report["skipped_offsets"].as_u64()), (0, Some(0)), "no frame late or skipped: {report}");
    let after = completions(b);
    for (p, id) in ids.iter().enumerate() {
        let mine = &after[id];
        // The victim's videos: read again whole by the survivor, stored and announced once. The
        // survivor's own may be announced again: eager rebalancing takes its partitions back
        // too, and with the default 60 s of lateness their commits (and marks) still trailed
        // the videos it had stored (at least once; cooperative rebalancing is open).
        if held.contains(&(p as i32)) {
            assert_eq!(mine.len(), 1, "{id}, in flight on the killed instance: announced once: {mine:?}");
        }
        assert_stored_whole(&s3, mine, id, 10 * FPS);
    }
    assert!(report["videos_stored"].as_u64() >= Some(4), "the survivor stored every video: {report}");
}

/// A fire model that fails every run is not a success (issue 23.5). This one fails on any frame
/// that is not black, so it passes the start-up test batch (black frames) and fails in the
/// pipeline, as a model fed input it cannot take does. The frames are published with no score
/// and the reason, the video is announced with the reason and not stored, and `--exit-at-end`
/// exits non-zero. Before, every frame was published as scored 0 ("no fire"), the video was
/// stored and announced as done, and the job exited 0.
#[test]
fn a_fire_model_failing_every_run_fails_the_job_and_stores_nothing() {
    let tansu = start_tansu();
    let brokers = tansu.brokers.clone();
    let dir = temp_dir();
    let clip = dir.path().join("clip.mp4");
    pitwall(&["gen", "video", "--fire", "--seconds", "2", "--out", &path_str(&clip)]);
    pitwall(&["topics", "create", "--brokers", &brokers]);
    pitwall(&["produce", "video", &path_str(&clip), "--id", "cam-broken", "--brokers", &brokers, "--quiet"]);
    let model = dir.path().join("fails_on_content.onnx");
    build_yolo_graph(&model, "N", StubVariant::FailsOnContent);
    let (out, spool) = (dir.path().join("out"), dir.path().join("spool"));
    let run = pitwall_command(&[
        "run",
        "--brokers",
        &brokers,
        "--pipelines",
        "video",
        "-w",
        "1",
        "--exit-at-end",
        "--fire-model",
        &path_str(&model),
        "--fire-model-kind",
        "yolo",
        "--video-out",
        &path_str(&out),
        "--spool",
        &path_str(&spool),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let output = wait_with_timeout(run, "run with a failing fire model", COMMAND_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the job must fail: {stderr}");
    assert!(stderr.contains("the fire model failed on every one of the"), "{stderr}");
    let report = run_report(&String::from_utf8_lossy(&output.stdout));
    let frames = report["frames"].as_u64().unwrap();
    assert!(frames >= 40, "{report}");
    assert_eq!((report["frames_unscored"].as_u64(), report["videos_stored"].as_u64()), (Some(frames), Some(0)), "{report}");

    let detections: Vec<Value> = tail(&brokers, "fire-detections").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(detections.len() as u64, frames, "every frame is reported");
    for d in &detections {
        assert!(d["score"].is_null() && d["fire"].is_null(), "no made-up score: {d}");
        assert!(d["error"].as_str().unwrap().contains("running model fails_on_content"), "{d}");
    }
    let completions: Vec<Value> = tail(&brokers, "video-completions").into_iter().map(|m| m["value"].clone()).collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    let c = &completions[0];
    assert!(c["error"].as_str().unwrap().contains(&format!("no verdict for {frames} of its frames")), "{c}");
    assert_eq!((c["unscored_frames"].as_u64(), c["location"].is_null()), (Some(frames), true), "{c}");
    let stored: Vec<_> = walk(&out);
    assert!(stored.is_empty(), "nothing is stored: {stored:?}");
    let spooled: Vec<_> = walk(&spool);
    assert!(spooled.is_empty(), "the unstored video's spooled file is removed: {spooled:?}");
}
