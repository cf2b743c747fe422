//! The zero-set-up demo shows live alerts within seconds, and `--help` documents the contract.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn demo_on_the_embedded_broker_shows_live_alerts_within_seconds() {
    let started = Instant::now();
    let mut child = pitwall_command(&["demo", "--duration", "20", "--speed", "10", "--drivers", "10", "--laps", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().unwrap();
    let reader =
        std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).map(|line| (started.elapsed(), line)).collect::<Vec<_>>());
    let output = wait_with_timeout(child, "pitwall demo", Duration::from_secs(90));
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let lines = reader.join().unwrap();
    let first_alert = lines.iter().find(|(_, l)| l.starts_with("ALERT")).unwrap_or_else(|| panic!("no alert in {lines:#?}"));
    assert!(first_alert.0 < Duration::from_secs(15), "first alert after {:?}", first_alert.0);
    assert!(lines.iter().filter(|(_, l)| l.starts_with("ALERT")).count() >= 5, "{lines:#?}");
    assert!(lines.iter().any(|(_, l)| l.starts_with("LAP   ")), "lap summaries printed: {lines:#?}");
    let summary = lines.iter().find(|(_, l)| l.starts_with("processed ")).expect("a closing summary");
    assert!(!summary.1.starts_with("processed 0 "), "{}", summary.1);
}

#[test]
fn help_explains_every_command_and_the_timely_flags() {
    let top = pitwall(&["--help"]);
    for command in ["gen", "topics", "produce", "run", "tail", "demo"] {
        assert!(top.contains(command), "{command} missing from --help");
    }
    let run = pitwall(&["run", "--help"]);
    for flag in [
        "-w, --workers",
        "-n, --processes",
        "-p, --process",
        "-h, --hostfile",
        "--exit-at-end",
        "--brokers",
        "--allowed-lateness-ms",
        "-X <KEY=VALUE>",
    ] {
        assert!(run.contains(flag), "`run --help` lacks {flag}:\n{run}");
    }
    for args in [
        &["gen", "race", "--help"][..],
        &["topics", "create", "--help"],
        &["produce", "telemetry", "--help"],
        &["tail", "--help"],
        &["demo", "--help"],
    ] {
        assert!(pitwall(args).contains("Usage"), "{args:?}");
    }
}

#[test]
fn unreachable_or_unprepared_brokers_fail_with_a_clear_error() {
    let broker = start_tansu();
    let output = pitwall_command(&["run", "--brokers", &broker.brokers, "--exit-at-end"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("topic `f1-telemetry` does not exist") && stderr.contains("pitwall topics create"), "{stderr}");
}

#[test]
fn a_window_shape_that_cannot_slide_is_refused_before_any_worker_starts() {
    // Nothing listens on port 9: the shape is checked before the broker is needed.
    let output = pitwall_command(&["run", "--brokers", "127.0.0.1:9", "--window-length-ms", "5000", "--window-slide-ms", "20000", "--exit-at-end"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a clean error exit, not a worker panic");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--window-slide-ms") && stderr.contains("slide 20000 ms"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_demo_set_up_installs_only_what_the_demo_needs() {
    let list = |args: &[&str]| -> Vec<String> {
        let output = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup.sh")).args(args).output().expect("setup.sh runs");
        assert!(output.status.success(), "setup.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).split_whitespace().map(|w| w.split("==").next().unwrap().to_string()).collect()
    };
    let (demo, all) = (list(&["--demo", "--list"]), list(&["--list"]));
    let tests_only = ["chromium", "prometheus", "ffmpeg", "systemd", "pandas", "pyarrow", "kafka-python", "tansu", "s3s-fs"];
    for needed in ["build-essential", "libavcodec-dev", "libclang-dev", "onnxruntime"] {
        assert!(demo.iter().any(|w| w == needed) && all.iter().any(|w| w == needed), "{needed}: demo {demo:?}");
    }
    for test_only in tests_only {
        assert!(!demo.iter().any(|w| w == test_only), "the demo installs {test_only}: {demo:?}");
        assert!(all.iter().any(|w| w == test_only), "the tests need {test_only}: {all:?}");
    }
    let demo_script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh")).unwrap();
    assert!(demo_script.contains("scripts/setup.sh --demo"), "demo.sh sets up for the demo only");
}
