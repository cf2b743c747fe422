//! A real Prometheus server (Debian's package) scrapes a running job's bridge, and the series it
//! stored are read back through its HTTP API: records per partition equal what was produced,
//! deliveries per sink are there, the scrape target is up, the process metrics (CPU, memory,
//! fds, threads, start time) are plausible, the shipped alert rules all evaluate (none firing),
//! and every query of the scaling dashboard answers series.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// `GET /api/v1/query?query=...` on Prometheus; the `data.result` array.
fn prom_query(addr: &str, query: &str) -> Vec<Value> {
    let encoded: String =
        query.bytes().map(|b| if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={encoded}"));
    assert_eq!(status, 200, "{query}: {body}");
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
    value["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn scalar(result: &[Value]) -> Option<f64> {
    result.first().and_then(|r| r["value"][1].as_str()).and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_scrapes_the_bridge_and_the_series_read_back() {
    let (tansu, dir, _) = tansu_with_race(4, 1);
    let b = tansu.brokers.as_str();
    let produced = produce_race(b, dir.path());
    let sent: f64 = produced.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{produced}"));

    let bridge = format!("127.0.0.1:{}", free_port());
    let _job = KillOnDrop(
        pitwall_command(&["run", "--brokers", b, "-w", "2", "--bridge", &bridge]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );

    // A replay producer serving its own metrics, scraped too (the scaling dashboard's producer
    // panel reads them), paced so that it runs through the test, into a topic of its own.
    create_topics(b, &[("replay-metrics", 2)]);
    let producer_addr = format!("127.0.0.1:{}", free_port());
    let input = path_str(dir.path());
    let replay_args = [
        "produce",
        "telemetry",
        "--brokers",
        b,
        "--input",
        &input,
        "--topic",
        "replay-metrics",
        "--rate",
        "100",
        "--quiet",
        "--metrics",
        &producer_addr,
    ];
    let _replay = KillOnDrop(pitwall_command(&replay_args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{RULES}']\nscrape_configs:\n  - job_name: pitwall\n    static_configs:\n      - targets: ['{bridge}']\n  - job_name: pitwall-producer\n    static_configs:\n      - targets: ['{producer_addr}']\n"
        ),
    )
    .unwrap();
    let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let _prometheus = KillOnDrop(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{binary}` ({e}); run scripts/setup.sh (Debian package prometheus)")),
    );

    // Listening is not ready: Prometheus answers 503 until its storage is up.
    wait_until("Prometheus to be ready", Duration::from_secs(90), || {
        let (status, body) =
            if std::net::TcpStream::connect(&prom_addr).is_ok() { http_get(&prom_addr, "/-/ready") } else { (0, "not listening".into()) };
        holds(status == 200, || format!("{status} {body}"))
    });
    wait_until_every("Prometheus to see every record counted", Duration::from_secs(90), Duration::from_millis(500), || {
        let records = scalar(&prom_query(&prom_addr, "sum(pitwall_source_records_total{topic=\"f1-telemetry\"})"));
        holds(records == Some(sent), || format!("{records:?} of {sent}"))
    });
    assert_eq!(scalar(&prom_query(&prom_addr, "up{job=\"pitwall\"}")), Some(1.0));
    let partitions = prom_query(&prom_addr, "pitwall_source_records_total{topic=\"f1-telemetry\"}");
    assert_eq!(partitions.len(), 4, "one series per partition: {partitions:?}");
    let sinks: Vec<String> =
        prom_query(&prom_addr, "pitwall_sink_delivered_total").iter().map(|r| r["metric"]["sink"].as_str().unwrap().to_string()).collect();
    assert!(sinks.contains(&"windows".to_string()) && sinks.contains(&"alerts".to_string()), "{sinks:?}");
    assert_eq!(scalar(&prom_query(&prom_addr, "sum(pitwall_source_stalled)")), Some(0.0));
    // The process metrics (the client's process collector): plausible values for this job.
    let process = |name: &str| scalar(&prom_query(&prom_addr, &format!("{name}{{job=\"pitwall\"}}"))).unwrap_or_else(|| panic!("{name} missing"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = process("process_start_time_seconds");
    assert!(started > now - 600.0 && started <= now + 1.0, "started {started}, now {now}");
    // Whole seconds (the client's collector counts CPU as an integer): at most wall time x cores.
    let cpu = process("process_cpu_seconds_total");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(cpu >= 0.0 && cpu <= (now - started + 1.0) * cores, "{cpu} CPU seconds in {} s", now - started);
    let rss = process("process_resident_memory_bytes");
    assert!(rss > 10e6 && rss < process("process_virtual_memory_bytes"), "resident {rss} bytes");
    assert!(process("process_threads") > 2.0, "workers and librdkafka threads");
    let fds = process("process_open_fds");
    assert!(fds > 3.0 && fds < process("process_max_fds"), "{fds} open fds");

    // The shipped alert rules: loaded, every one evaluated without error against this job's
    // series, every metric they read present (the upload outcomes only exist with video), and
    // none firing or pending on a healthy job.
    let rules_text = std::fs::read_to_string(RULES).unwrap();
    let metrics: std::collections::BTreeSet<&str> = rules_text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| (w.starts_with("pitwall_") || w.starts_with("process_")) && *w != "pitwall_uploads_total")
        .collect();
    for metric in &metrics {
        assert!(!prom_query(&prom_addr, metric).is_empty(), "{metric}, read by an alert rule, has no series");
    }
    let rules = wait_until("every alert rule to be evaluated", Duration::from_secs(30), || {
        let (_, body) = http_get(&prom_addr, "/api/v1/rules");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<Value> =
            answer["data"]["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
        let evaluated = rules.iter().filter(|r| r["health"] == "ok").count();
        holds(rules.len() == 8 && evaluated == 8, || body.clone()).map(|_| rules.clone())
    });
    let active: Vec<&Value> = rules.iter().filter(|r| r["state"] != "inactive").collect();
    assert!(active.is_empty(), "alerts on a healthy job: {active:?}");

    // The scaling dashboard: every query of every panel answers series from this job.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(SCALING).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 10, "the seed's ten panels");
    let queries: Vec<(String, String)> = panels
        .iter()
        .flat_map(|panel| {
            assert_eq!(panel["datasource"]["uid"], "pitwall-prometheus");
            let title = panel["title"].as_str().unwrap().to_string();
            panel["targets"].as_array().unwrap().iter().map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string())).collect::<Vec<_>>()
        })
        .collect();
    // Rates need two scrapes inside their window.
    wait_until("every panel's query to answer series", Duration::from_secs(60), || {
        let empty: Vec<&(String, String)> = queries.iter().filter(|(_, expr)| prom_query(&prom_addr, expr).is_empty()).collect();
        holds(empty.is_empty(), || format!("no series for {empty:?}"))
    });
}

/// The scaling dashboard's panels are Prometheus queries.
const SCALING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards/scaling.json");

/// The alert rules shipped with the dashboards.
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/alerts/pitwall-rules.yml");
