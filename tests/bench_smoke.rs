//! The scaling harness in smoke mode (tiny race, two short latency runs) against the Tansu it
//! starts itself: every figure is produced and finite. Targets are not asserted here (CI
//! machines are noisy); the full harness is run by hand and its results committed.

mod support;

use std::collections::HashMap;

use support::*;

#[test]
fn smoke_run_produces_every_figure() {
    let dir = temp_dir();
    // Two interleaved runs of each throughput measurement: rows are their medians, with the range.
    let child = pitwall_command(&["bench", "scaling", "--smoke", "--repeat", "2", "--out", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the harness");
    let output = wait_with_timeout(child, "bench scaling --smoke", COMMAND_TIMEOUT);
    assert!(output.status.success(), "harness failed:\n{}", String::from_utf8_lossy(&output.stderr));

    let dated: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dated.len(), 1, "one dated results folder: {dated:?}");
    let results = &dated[0];
    let csv = std::fs::read_to_string(results.join("results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<HashMap<&str, &str>> = lines.map(|l| header.iter().copied().zip(l.split(',')).collect()).collect();
    let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r["kind"], r["config"])).collect();
    assert_eq!(
        kinds,
        [
            ("produce", "4 producers"),
            ("ceiling", "1 consumer"),
            ("run", "-w 1"),
            ("run", "-w 2"),
            ("run", "-n 2 -w 1"),
            ("latency", "-w 2"),
            ("latency", "-w 2")
        ]
    );
    let number = |row: &HashMap<&str, &str>, column: &str| -> f64 {
        let value: f64 = row[column].parse().unwrap_or_else(|_| panic!("{column} of {row:?} is not a number"));
        assert!(value.is_finite(), "{column} of {row:?} is not finite");
        value
    };
    for row in &rows {
        assert!(number(row, "msg_per_s") > 0.0, "{row:?}");
        match row["kind"] {
            "ceiling" | "run" => {
                assert_eq!(number(row, "records"), 20_000.0, "every record read: {row:?}");
                assert!(number(row, "peak_rss_mb") > 1.0, "{row:?}");
                assert_eq!(number(row, "runs"), 2.0, "{row:?}");
                assert!(number(row, "cpu_s") > 0.0, "the process's CPU time: {row:?}");
                // The harness started this Tansu, so it sees the broker's CPU serving the reads.
                assert!(number(row, "broker_cpu_s") > 0.0, "the broker's CPU time: {row:?}");
                let (low, high) = (number(row, "msg_per_s_min"), number(row, "msg_per_s_max"));
                // Of two runs the median is the slower one.
                assert!(low <= high && (number(row, "msg_per_s") - low).abs() < 1.0, "{row:?}");
            }
            "latency" => {
                assert!(number(row, "alerts_timed") >= 1.0, "{row:?}");
                let (p50, p99, max) = (number(row, "published_p50_ms"), number(row, "published_p99_ms"), number(row, "published_max_ms"));
                assert!(p50 <= p99 && p99 <= max, "percentiles in order: {row:?}");
                assert!(number(row, "received_p50_ms") >= 0.0);
                // The producer pool keeps to the offered rate within a factor of two.
                let (offered, achieved) = (number(row, "offered_msg_per_s"), number(row, "achieved_msg_per_s"));
                assert!(achieved > offered / 2.0 && achieved < offered * 2.0, "{row:?}");
            }
            _ => {}
        }
        if row["kind"] == "run" {
            assert!(number(row, "ratio_to_ceiling") > 0.0, "{row:?}");
        }
    }
    for plot in ["throughput.png", "latency.png"] {
        let bytes = std::fs::read(results.join(plot)).expect(plot);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{plot} is a real PNG");
    }
    let markdown = std::fs::read_to_string(results.join("results.md")).unwrap();
    assert!(markdown.contains("| run | -n 2 -w 1 |") && markdown.contains("vs seed"), "{markdown}");
    // Every row of each table has as many cells as its header.
    for table in markdown.split("\n\n").filter(|t| t.trim_start().starts_with('|')) {
        let cells: Vec<usize> = table.lines().map(|l| l.matches('|').count()).collect();
        assert!(cells.iter().all(|c| *c == cells[0]), "ragged table:\n{table}");
    }
    // Peak RSS is the child's own (the harness holds the whole race; a child that inherited
    // that figure would report the same number for every run).
    let rss: Vec<f64> = rows.iter().filter(|r| r["kind"] == "run").map(|r| number(r, "peak_rss_mb")).collect();
    let single: Vec<f64> = rows.iter().filter(|r| r["kind"] == "run" && r["processes"] == "1").map(|r| number(r, "peak_rss_mb")).collect();
    assert!(single.iter().all(|mb| *mb < 2_000.0), "{rss:?}");
}

#[test]
fn video_smoke_run_produces_every_figure() {
    let dir = temp_dir();
    let child = pitwall_command(&["bench", "video", "--smoke", "--out", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the video harness");
    let output = wait_with_timeout(child, "bench video --smoke", COMMAND_TIMEOUT);
    assert!(output.status.success(), "video harness failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let dated: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    let csv = std::fs::read_to_string(dated[0].join("video.csv")).expect("video.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // The last column (the note) is quoted and may hold commas: split off the first eight.
    let rows: Vec<HashMap<&str, &str>> = lines.map(|l| header.iter().copied().zip(l.splitn(header.len(), ',')).collect()).collect();
    let phases: Vec<&str> = rows.iter().map(|r| r["phase"]).collect();
    assert_eq!(phases, ["model alone", "produce", "run -w 1", "run -w 2", "live -w 2: frame -> detection", "live -w 2: end of clip -> stored"]);
    let number = |row: &HashMap<&str, &str>, column: &str| -> f64 {
        let value: f64 = row[column].parse().unwrap_or_else(|_| panic!("{column} of {row:?} is not a number"));
        assert!(value.is_finite() && value >= 0.0, "{column} of {row:?}");
        value
    };
    // 2 copies of a 2 s clip at 25 fps in the throughput runs; one clip live.
    for row in &rows[..4] {
        assert!(number(row, "frames_per_s") > 0.0, "{row:?}");
        assert_eq!(number(row, "frames"), if row["phase"] == "model alone" { 50.0 } else { 100.0 }, "{row:?}");
    }
    let live = &rows[4];
    assert_eq!(number(live, "frames"), 50.0);
    assert!(number(live, "p50_ms") <= number(live, "p99_ms") && number(live, "p99_ms") <= number(live, "max_ms"), "{live:?}");
    assert!(number(&rows[5], "p50_ms") < 60_000.0, "{:?}", rows[5]);
    let markdown = std::fs::read_to_string(dated[0].join("video.md")).unwrap();
    assert!(markdown.contains("vs model alone"), "{markdown}");
}
