//! The object store against a real S3 server process (s3s-fs, SigV4): single and multipart
//! uploads arrive byte for byte, a wrong bucket is a start-up error, and an upload started while
//! the server is down is retried until the server is back (an S3 outage loses nothing); a job
//! can keep a stored video's local copy and announce a presigned link that works.

mod support;

use std::time::{Duration, Instant};

use pitwall_connectors::store::{ObjectStore, S3Settings, UploadPolicy};
use support::*;

fn settings(s3: &S3Server, bucket: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.into(),
        endpoint: Some(s3.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key: Some(S3_ACCESS_KEY.into()),
        secret_key: Some(S3_SECRET_KEY.into()),
        path_style: true,
    }
}

/// `len` bytes that differ from position to position (a shifted part would not compare equal).
fn bytes(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect()
}

#[test]
fn single_and_multipart_uploads_arrive_whole() {
    let s3 = S3Server::start(&["videos"]);
    let dir = temp_dir();
    let policy = UploadPolicy { multipart_threshold: 6 << 20, part_size: 5 << 20, ..UploadPolicy::default() };
    let store = ObjectStore::s3(&settings(&s3, "videos"), policy).unwrap();
    for (name, len) in [("small.mp4", 300_000), ("large.mp4", 12 << 20)] {
        let file = dir.path().join(name);
        let data = bytes(len);
        std::fs::write(&file, &data).unwrap();
        let key = format!("videos/{name}");
        assert_eq!(store.put_file_blocking(&file, &key).unwrap(), format!("s3://videos/{key}"));
        let stored = std::fs::read(s3.root.path().join("videos").join(&key)).unwrap();
        assert!(stored == data, "{name}: {} bytes stored, {} sent", stored.len(), data.len());
    }
    // A bucket that does not exist is refused at start, with its name.
    let error = ObjectStore::s3(&settings(&s3, "no-such-bucket"), UploadPolicy::default()).unwrap_err().to_string();
    assert!(error.contains("no-such-bucket"), "{error}");
}

#[test]
fn an_upload_during_an_s3_outage_is_retried_until_the_server_is_back() {
    let mut s3 = S3Server::start(&["videos"]);
    let dir = temp_dir();
    let file = dir.path().join("clip.mp4");
    let data = bytes(2 << 20);
    std::fs::write(&file, &data).unwrap();
    let policy = UploadPolicy { first_backoff: Duration::from_millis(100), max_backoff: Duration::from_millis(500), ..UploadPolicy::default() };
    let store = ObjectStore::s3(&settings(&s3, "videos"), policy).unwrap();
    s3.stop();
    let started = Instant::now();
    let upload = std::thread::spawn(move || store.put_file_blocking(&file, "videos/clip.mp4"));
    hold_fault(Duration::from_secs(3));
    assert!(!upload.is_finished(), "the upload gave up (or succeeded) while the server was down");
    s3.restart();
    let location = upload.join().unwrap().expect("stored once the server is back");
    assert_eq!(location, "s3://videos/videos/clip.mp4");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(std::fs::read(s3.root.path().join("videos/videos/clip.mp4")).unwrap() == data);
}

#[test]
fn a_stored_video_keeps_its_local_copy_and_carries_a_working_presigned_link_when_asked() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let s3 = S3Server::start(&["firewatch"]);
    let dir = temp_dir();
    let clip = dir.path().join("cam.mp4");
    pitwall(&["gen", "video", "--no-fire", "--seconds", "2", "--width", "160", "--height", "90", "--out", &path_str(&clip)]);
    pitwall(&["topics", "create", "--brokers", b]);
    pitwall(&["produce", "video", &path_str(&clip), "--id", "cam", "--brokers", b, "--quiet"]);
    let kept = dir.path().join("kept");
    let spool = dir.path().join("spool");
    let args =
        ["run", "--brokers", b, "--pipelines", "video", "-w", "1", "--exit-at-end", "--spool", &path_str(&spool), "--video-out", &path_str(&kept)];
    let mut run = pitwall_command(&args);
    run.args(["--s3-presign-secs", "600"]).envs(s3.client_env()).env("S3_BUCKET", "firewatch").env("S3_DELETE_LOCAL_AFTER_UPLOAD", "false");
    let output =
        wait_with_timeout(run.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap(), "run", COMMAND_TIMEOUT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let completions = tail(b, "video-completions");
    assert_eq!(completions.len(), 1, "{completions:?}");
    let completion = &completions[0]["value"];
    let stored = std::fs::read(s3.root.path().join("firewatch/videos/cam_with_heatmaps.mp4")).expect("stored in the bucket");
    // The link, fetched with a plain HTTP GET and no credentials, gives the stored bytes.
    let link = completion["presigned_url"].as_str().unwrap_or_else(|| panic!("no link: {completion}"));
    assert!(link.contains("X-Amz-Expires=600") && link.contains("X-Amz-Signature="), "{link}");
    let rest = link.strip_prefix("http://").unwrap_or_else(|| panic!("{link}"));
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let (status, body) = http_get_bytes(addr, path, None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == stored, "{} bytes from the link, {} stored", body.len(), stored.len());
    // A link changed to last longer is refused.
    let (status, _) = http_get_bytes(addr, &path.replace("X-Amz-Expires=600", "X-Amz-Expires=6000"), None);
    assert_eq!(status, 403);
    // The local copy is kept under --video-out with the key layout, and nothing stays spooled.
    let copy = std::fs::read(kept.join("videos/cam_with_heatmaps.mp4")).expect("local copy kept");
    assert!(copy == stored);
    let spooled: Vec<_> = std::fs::read_dir(spool.join("worker-0")).map(|d| d.collect()).unwrap_or_default();
    assert!(spooled.is_empty(), "{spooled:?}");
}
