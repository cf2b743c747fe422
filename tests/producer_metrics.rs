//! `pitwall produce telemetry|video --metrics ADDR` serves the producer's metrics while it runs
//! (against a Tansu broker): records and bytes delivered, errors, retries, the queue's depth and
//! the send latency per topic, plus the process metrics; the counts match what was sent.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use support::*;

/// Scrapes `/metrics` at `addr` until `records_total` for `topic` reaches `at_least`; returns the text.
fn scrape_until(addr: &str, child: &mut Child, topic: &str, at_least: f64) -> String {
    wait_until("the producer's metrics to count deliveries", Duration::from_secs(60), || {
        assert!(child.try_wait().unwrap().is_none(), "the producer ended before it was scraped");
        let text = if std::net::TcpStream::connect(addr).is_ok() { http_get(addr, "/metrics").1 } else { String::new() };
        let delivered = metric_sum(&text, "pitwall_producer_records_total", &format!("topic=\"{topic}\""));
        holds(delivered >= at_least, || format!("{delivered} delivered; {text}")).map(|_| text.clone())
    })
}

/// Asserts every producer metric is there for `topic` with plausible values.
fn assert_producer_metrics(text: &str, topic: &str, most: f64) {
    let label = format!("topic=\"{topic}\"");
    let value = |name: &str| metric_sum(text, name, &label);
    let delivered = value("pitwall_producer_records_total");
    assert!(delivered > 0.0 && delivered <= most, "{delivered} delivered of {most}");
    assert!(value("pitwall_producer_bytes_total") > delivered * 10.0, "bytes delivered");
    assert_eq!(value("pitwall_producer_errors_total"), 0.0);
    // A latency sample per delivery (a scrape may fall between a delivery's two updates).
    let samples = value("pitwall_producer_send_latency_seconds_count");
    assert!(samples <= delivered && samples + 2.0 >= delivered, "{samples} latency samples, {delivered} delivered");
    let latency = value("pitwall_producer_send_latency_seconds_sum") / samples;
    assert!(latency > 0.0 && latency < 10.0, "mean send latency {latency} s");
    for name in ["pitwall_producer_retries_total", "pitwall_producer_queue_messages"] {
        assert!(text.lines().any(|l| l.starts_with(name) && l.contains(&label)), "{name} for {topic}: {text}");
    }
    assert!(text.contains("process_resident_memory_bytes"), "process metrics too");
}

#[test]
fn produce_telemetry_and_video_serve_their_metrics_while_they_run() {
    let (tansu, dir, _) = tansu_with_race(2, 1);
    let b = tansu.brokers.as_str();
    let rows: usize = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count() - 1)
        .sum();

    // Telemetry, paced so that it runs for some seconds.
    let addr = format!("127.0.0.1:{}", free_port());
    let input = path_str(dir.path());
    let mut child = pitwall_command(&["produce", "telemetry", "--brokers", b, "--input", &input, "--rate", "2000", "--quiet", "--metrics", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = scrape_until(&addr, &mut child, "f1-telemetry", 100.0);
    assert_producer_metrics(&text, "f1-telemetry", rows as f64);
    let output = wait_with_timeout(child, "produce telemetry", COMMAND_TIMEOUT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("sent {rows} records")));

    // Video, in real time.
    let clip = dir.path().join("cam.mp4");
    pitwall(&["gen", "video", "--no-fire", "--seconds", "4", "--width", "160", "--height", "90", "--out", &path_str(&clip)]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child =
        pitwall_command(&["produce", "video", &path_str(&clip), "--id", "cam", "--brokers", b, "--realtime", "--quiet", "--metrics", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let text = scrape_until(&addr, &mut child, "video-frames", 10.0);
    assert_producer_metrics(&text, "video-frames", 101.0);
    let output = wait_with_timeout(child, "produce video", COMMAND_TIMEOUT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
