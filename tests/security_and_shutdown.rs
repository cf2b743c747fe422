//! Safe defaults and graceful shutdown: the bridge's bearer token guards every endpoint but
//! /health; `--bridge` alone binds loopback; secrets given as librdkafka properties or as the
//! bridge token never appear in logs or errors, even at debug level; SIGTERM stops reading,
//! drains, flushes, commits and exits 0.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use pitwall::cli::{Cli, Command};
use pitwall_dataflows::sim::{Race, RaceConfig};
use rdkafka::producer::Producer;
use support::*;

const TOKEN: &str = "tok-7f3a9-correct-horse";
const KAFKA_SECRET: &str = "kafka-pw-91c2e";

#[test]
fn bridge_flag_alone_binds_loopback_and_no_flag_serves_nothing() {
    let parse = |args: &[&str]| match Cli::try_parse_from(args).expect("valid flags").command {
        Command::Run(run) => run.bridge.bridge,
        _ => unreachable!(),
    };
    assert_eq!(parse(&["pitwall", "run", "-b", "k:9092", "--bridge"]), Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(parse(&["pitwall", "run", "-b", "k:9092", "--bridge", "-w", "2"]), Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(parse(&["pitwall", "run", "-b", "k:9092"]), None);
    assert!(Cli::try_parse_from(["pitwall", "run", "-b", "k:9092", "--bridge-token", " "]).is_err(), "an empty token is refused");
}

#[test]
fn token_guards_the_bridge_and_sigterm_drains_flushes_and_commits() {
    let broker = start_tansu();
    let b = broker.brokers.as_str();
    create_topics(b, &[("f1-telemetry", 4), ("f1-alerts", 3), ("f1-windows", 4), ("pitwall-dlq", 1), ("pitwall-late", 1)]);
    let records = Race::generate(&RaceConfig { drivers: 4, laps: 2, seed: 5, inject_anomalies: true }).all_records();
    let producer = test_producer(b);
    records.iter().for_each(|r| send_record(&producer, "f1-telemetry", 4, r));
    producer.flush(Duration::from_secs(30)).unwrap();

    let bridge = format!("127.0.0.1:{}", free_port());
    let child = pitwall_command(&["run", "-b", b, "--bridge", &bridge, "-w", "2", "-X", &format!("sasl.password={KAFKA_SECRET}")])
        .env("PITWALL_BRIDGE_TOKEN", TOKEN)
        .env("PITWALL_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pitwall run");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let bearer = format!("Bearer {TOKEN}");
    wait_listening(&bridge, deadline.saturating_duration_since(Instant::now()));
    // /health is open: load balancers and probes need no secret.
    assert_eq!(http_get(&bridge, "/health").0, 200);
    for (authorization, expected) in
        [(None, 401), (Some("Bearer wrong"), 401), (Some(&format!("Bearer {TOKEN}x")[..]), 401), (Some(TOKEN), 401), (Some(&bearer[..]), 200)]
    {
        for path in ["/metrics", "/anything"] {
            let (status, body) = http_get_with(&bridge, path, authorization);
            let expected = if path == "/anything" && expected == 200 { 404 } else { expected };
            assert_eq!(status, expected, "{path} with {authorization:?}: {body}");
            assert!(!body.contains(TOKEN), "the token is never echoed");
        }
    }
    // Every route but /health and the dashboard page needs the token: Prometheus, Grafana's
    // datasource, live queries, the dashboard's API, its event stream and thumbnails.
    let guarded =
        ["/metrics", "/grafana", "/grafana/search", "/v1/queries", "/v1/queries/1", "/api/snapshot", "/api/thumbnails/cam.png", "/api/events"];
    for path in guarded {
        assert_eq!(http_get(&bridge, path).0, 401, "GET {path} without the token");
        // The event stream never ends: only its refusal is read.
        if path != "/api/events" {
            let (status, body) = http_get_with(&bridge, path, Some(&bearer));
            assert_ne!(status, 401, "GET {path} with the token: {body}");
        }
    }
    for path in ["/grafana/query", "/grafana/search", "/v1/queries"] {
        assert_eq!(http_request(&bridge, "POST", path, "Content-Type: application/json\r\n", b"{}").0, 401, "POST {path} without the token");
    }
    assert_eq!(http_get(&bridge, "/").0, 200, "the dashboard page itself is open (it holds no data)");
    // Wait until every record is read, then ask for a graceful stop.
    let read = || metric_sum(&http_get_with(&bridge, "/metrics", Some(&bearer)).1, "pitwall_source_records_total", "");
    wait_until("every record read", deadline.saturating_duration_since(Instant::now()), || {
        let read = read();
        holds(read >= records.len() as f64, || format!("read {read} of {}", records.len()))
    });
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let output = wait_with_timeout(child, "pitwall run (SIGTERM)", COMMAND_TIMEOUT);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "SIGTERM must end in exit 0 ({})\n{stderr}", output.status);
    let report = run_report(&stdout);
    assert_eq!(report["records"].as_u64(), Some(records.len() as u64), "{report}");
    for secret in [TOKEN, KAFKA_SECRET] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "secret {secret} leaked into the output");
    }

    // Drained and flushed: every window of the race is out, and the offsets of every record
    // are committed (lag 0 for an independent client).
    let windows = tail(b, "f1-windows");
    assert_eq!(windows.len() as u64, report["windows"].as_u64().unwrap(), "every window emitted was delivered");
    let offsets = committed_offsets(b, "pitwall", "f1-telemetry");
    for (partition, view) in offsets.as_object().unwrap() {
        // An empty partition has nothing to commit.
        assert_eq!(view["committed"].as_i64().unwrap_or(0), view["end"].as_i64().unwrap(), "partition {partition} after SIGTERM: {offsets}");
    }
}

#[test]
fn secrets_stay_out_of_logs_and_errors_at_debug_level() {
    // An unreachable broker makes the job fail at start-up, with librdkafka's configuration
    // dump and every error path in the output.
    let dead = format!("127.0.0.1:{}", free_port());
    let child = pitwall_command(&[
        "run",
        "-b",
        &dead,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanism=PLAIN",
        "-X",
        "sasl.username=engineer",
        "-X",
        &format!("sasl.password={KAFKA_SECRET}"),
        "-X",
        "debug=conf,security,broker",
        "--bridge-token",
        TOKEN,
        "--exit-at-end",
    ])
    .env("PITWALL_LOG", "debug")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn pitwall run");
    let output = wait_with_timeout(child, "pitwall run against a dead broker", COMMAND_TIMEOUT);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a dead broker is an error");
    // Debug logging is requested: librdkafka dumps the configuration when the client is created
    // (on the caller's thread, before any connection is tried, and the job retries the dead broker
    // for seconds), so the dump is there, with the password in it redacted.
    assert!(text.contains("CONF") && text.contains("sasl.username = [redacted]"), "librdkafka's configuration dump is in the output:\n{text}");
    assert!(text.contains("sasl.password = [redacted]"), "the dump lists the password, redacted:\n{text}");
    assert!(text.contains(&dead), "the error names the broker:\n{text}");
    for secret in [KAFKA_SECRET, TOKEN] {
        assert!(!text.contains(secret), "secret {secret} leaked:\n{text}");
    }
}
