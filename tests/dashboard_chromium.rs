//! The live dashboard in a real browser: headless Chromium (Debian's package) loads `GET /` of a
//! running job (telemetry and video on Tansu), runs its script, and the rendered page shows every
//! driver, at least one alert, the fire clip's thumbnail and its stored video. A screenshot is
//! saved as a test artifact (`$CARGO_TARGET_TMPDIR/dashboard.png`).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The first `n` server-sent events of `/api/events`, parsed.
fn read_events(addr: &str, n: usize) -> Vec<Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut events = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("the stream stays open");
        if let Some(data) = line.strip_prefix("data: ") {
            events.push(serde_json::from_str(data).expect("each event is JSON"));
            if events.len() == n {
                break;
            }
        }
    }
    events
}

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    let binary = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let child = Command::new(&binary)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--window-size=1400,1000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{binary}` ({e}); run scripts/setup.sh (Debian package chromium)"));
    wait_with_timeout(child, "chromium", Duration::from_secs(90))
}

#[test]
fn the_dashboard_renders_drivers_alerts_and_videos_in_chromium() {
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    let dir = temp_dir();
    let race = dir.path().join("race");
    gen_race(&race, 4, 1, "csv");
    let clip = dir.path().join("cam.mp4");
    pitwall(&["gen", "video", "--fire", "--seconds", "2", "--out", &path_str(&clip)]);
    pitwall(&["topics", "create", "--brokers", b]);
    pitwall(&["produce", "telemetry", "--brokers", b, "--input", &path_str(&race), "--max-rate", "--quiet"]);
    pitwall(&["produce", "video", &path_str(&clip), "--id", "cam-1", "--brokers", b, "--quiet"]);

    let bridge = format!("127.0.0.1:{}", free_port());
    let videos = dir.path().join("videos");
    let _job = KillOnDrop(
        pitwall_command(&[
            "run",
            "--brokers",
            b,
            "-w",
            "2",
            "--pipelines",
            "telemetry,video",
            "--bridge",
            &bridge,
            "--video-out",
            &path_str(&videos),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Wait until the job has every car, an alert and the stored video in its live view.
    wait_listening(&bridge, Duration::from_secs(90));
    wait_until("every car, an alert and the stored video in the live view", Duration::from_secs(90), || {
        let (status, body) = http_get(&bridge, "/api/snapshot");
        let s: Value = serde_json::from_str(&body).unwrap_or_default();
        let filled = |key: &str| s[key].as_array().is_some_and(|a| !a.is_empty());
        let ready =
            status == 200 && s["cars"].as_array().is_some_and(|c| c.len() == 4) && filled("alerts") && filled("videos") && filled("completions");
        holds(ready, || format!("{status} {body}"))
    });
    // The work shows in /metrics: frames through the model, the stored upload and its bytes,
    // alert latency, the live view's size (refreshed every second).
    wait_until("the work in /metrics", Duration::from_secs(30), || {
        let m = http_get(&bridge, "/metrics").1;
        let done = metric_sum(&m, "pitwall_inferred_total", "pipeline=\"video\"") == 50.0
            && metric_sum(&m, "pitwall_uploads_total", "outcome=\"stored\"") == 1.0
            && metric_sum(&m, "pitwall_upload_bytes_total", "") > 10_000.0
            && metric_sum(&m, "pitwall_alert_latency_seconds_count", "") >= 1.0
            && metric_sum(&m, "pitwall_bridge_points", "buffer=\"samples\"") > 1_000.0
            && metric_sum(&m, "pitwall_operator_records_total", "operator=\"fire_model\"") == 50.0
            && metric_sum(&m, "pitwall_operator_records_total", "operator=\"telemetry_dataflow\"") > 1_000.0;
        holds(done && metric_sum(&m, "pitwall_inference_seconds_total", "pipeline=\"video\"") > 0.0, || m)
    });
    let (status, png) = http_get_bytes(&bridge, "/api/thumbnails/cam-1.png", None);
    assert_eq!(status, 200, "thumbnail");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG thumbnail");

    // The event stream pushes a snapshot about twice a second, as JSON the page renders.
    let events = read_events(&bridge, 2);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["cars"].as_array().unwrap().len() == 4));

    // Headless Chromium's virtual clock waits for open connections, so the page is loaded
    // with its event stream off: it renders one snapshot with the same code the stream drives.
    let url = format!("http://{bridge}/?events=off");
    let profile = dir.path().join("chromium-profile");
    let dom = chromium(&["--virtual-time-budget=5000", "--dump-dom", &url], &profile);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "chromium failed: {}", String::from_utf8_lossy(&dom.stderr));
    let rows = html.matches("class=\"car-row").count();
    assert_eq!(rows, 4, "one table row per driver in the rendered page:\n{html}");
    for driver in ["VER", "PER", "HAM", "RUS"] {
        assert!(html.contains(&format!("data-driver=\"{driver}\"")), "{driver} missing");
    }
    assert!(html.contains("class=\"alert "), "at least one alert rendered");
    assert!(html.contains("/api/thumbnails/cam-1.png"), "the video's thumbnail is shown");
    assert!(html.contains("cam-1_with_heatmaps.mp4"), "the stored video is linked");
    assert!(html.contains("<polyline"), "track and traces drawn");

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let shot = chromium(&["--virtual-time-budget=5000", &format!("--screenshot={}", screenshot.display()), &url], &profile);
    assert!(shot.status.success(), "chromium screenshot failed: {}", String::from_utf8_lossy(&shot.stderr));
    let bytes = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000, "a real screenshot");
    eprintln!("dashboard screenshot: {}", screenshot.display());
}
