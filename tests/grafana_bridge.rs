//! Grafana's JSON datasource on a running job (Tansu, `run -w 2 --bridge`), with request bodies
//! shaped like the ones Grafana sends: health, search, time series (checked against the
//! generated race row by row), tables, annotations (checked against `f1-alerts`), down-sampling,
//! and every kind of bad request answered with a 4xx and a message, the job still healthy after.
//! A contract part sends the bodies both plugins send (the current "JSON" plugin,
//! simpod-json-datasource, and the legacy SimpleJSON): test connection with and without the
//! trailing slash, /metric-payload-options, /variable, /tag-keys, /tag-values, annotations through
//! /query, ad hoc filters, intervalMs, and CORS for Grafana's browser access mode.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Grafana's `/query` body (JSON API datasource), as recorded from a dashboard panel.
fn query_body(from: &str, to: &str, max_points: u64, targets: Value) -> Vec<u8> {
    json!({
        "app": "dashboard", "requestId": "Q101", "timezone": "browser", "panelId": 2, "dashboardId": null,
        "range": { "from": from, "to": to, "raw": { "from": "now-6h", "to": "now" } },
        "timeInfo": "", "interval": "2s", "intervalMs": 2000,
        "targets": targets,
        "maxDataPoints": max_points, "scopedVars": {}, "startTime": 1_700_000_000_000_u64,
        "rangeRaw": { "from": "now-6h", "to": "now" }, "adhocFilters": []
    })
    .to_string()
    .into_bytes()
}

/// The race's rows per driver, read back from the generated CSVs.
fn rows_per_driver(dir: &std::path::Path) -> BTreeMap<String, usize> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().to_string(), std::fs::read_to_string(&p).unwrap().lines().count() - 1))
        .collect()
}

#[test]
fn grafana_endpoints_answer_from_the_live_view_and_refuse_bad_requests() {
    let (tansu, dir, truth) = tansu_with_race(3, 1);
    let b = tansu.brokers.as_str();
    produce_race(b, dir.path());
    let rows = rows_per_driver(dir.path());

    let bridge = format!("127.0.0.1:{}", free_port());
    // Charted at the session's own dates (2023): the race was produced at full speed, not live.
    let job = pitwall_command(&[
        "run",
        "--brokers",
        b,
        "-w",
        "2",
        "--bridge",
        &bridge,
        "--bridge-cors-origin",
        "http://grafana.test:3000",
        "--bridge-time",
        "session",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut job = KillOnDrop(job);
    // Wait until every sample is in the view (the live job has read the whole topic).
    let (from, to) = ("2023-03-05T14:00:00.000Z", "2023-03-05T16:00:00.000Z");
    let driver = rows.keys().next().unwrap().clone();
    let target = format!("{driver}:speed");
    wait_until("the bridge to listen", Duration::from_secs(90), || {
        assert!(job.0.try_wait().unwrap().is_none(), "the job exited before its bridge listened on {bridge}");
        std::net::TcpStream::connect(&bridge).map(drop).map_err(|e| e.to_string())
    });
    wait_until_every("every sample and every driver's windows in the live view", Duration::from_secs(90), Duration::from_millis(300), || {
        let (status, body) =
            http_post(&bridge, "/grafana/query", &query_body(from, to, 100_000, json!([{ "target": target, "refId": "A", "type": "timeserie" }])));
        let samples_in = status == 200 && serde_json::from_str::<Value>(&body).unwrap()[0]["datapoints"].as_array().unwrap().len() == rows[&driver];
        // Windows close as the watermark passes them: wait for every driver's first ones too.
        let (_, listed) = http_post(&bridge, "/grafana/search", br#"{"target":"window.speed_mean"}"#);
        let windows_in = serde_json::from_str::<Vec<String>>(&listed).map(|l| l.len() == rows.len()).unwrap_or(false);
        holds(samples_in && windows_in, || format!("{} samples of {driver} wanted: {status} {body}", rows[&driver]))
    });
    let addr = bridge;

    // Health and search.
    let (status, body) = http_get(&addr, "/grafana/");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["status"].as_str()), (200, Some("ok")));
    let (status, body) = http_post(&addr, "/grafana/search", br#"{"target":""}"#);
    assert_eq!(status, 200);
    let targets: Vec<String> = serde_json::from_str(&body).unwrap();
    // The JSON API plugin (simpod-json-datasource) lists metrics through /metrics.
    let (status, body) = http_post(&addr, "/grafana/metrics", br#"{"metric":""}"#);
    let metrics: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(metrics.len(), targets.len());
    assert_eq!(metrics[0]["value"], targets[0].as_str());
    for d in rows.keys() {
        for t in [format!("{d}:speed"), format!("{d}:rpm"), format!("{d}:window.speed_mean")] {
            assert!(targets.contains(&t), "{t} missing from {targets:?}");
        }
    }
    assert!(targets.contains(&"alerts".to_string()));
    let (_, body) = http_post(&addr, "/grafana/search", format!(r#"{{"target":"{driver}:win"}}"#).as_bytes());
    let filtered: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(!filtered.is_empty() && filtered.iter().all(|t| t.starts_with(&format!("{driver}:window."))), "{filtered:?}");

    // Every sample, in time order and range; down-sampled to at most maxDataPoints.
    let (status, body) = http_post(&addr, "/grafana/query", &query_body(from, to, 100_000, json!([{ "target": target, "refId": "A" }])));
    assert_eq!(status, 200);
    let full: Value = serde_json::from_str(&body).unwrap();
    let points = full[0]["datapoints"].as_array().unwrap();
    assert_eq!(points.len(), rows[&driver]);
    let times: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(points.iter().all(|p| (0.0..=400.0).contains(&p[0].as_f64().unwrap())));
    let (_, body) = http_post(
        &addr,
        "/grafana/query",
        &query_body(
            from,
            to,
            50,
            json!([{ "target": target, "refId": "A" }, { "target": format!("{driver}:window.speed_mean"), "refId": "B" }, { "target": "alerts", "refId": "C", "type": "table" }]),
        ),
    );
    let answer: Value = serde_json::from_str(&body).unwrap();
    let coarse = answer[0]["datapoints"].as_array().unwrap();
    assert!(!coarse.is_empty() && coarse.len() <= 50, "{} points", coarse.len());
    let mean = |ps: &[Value]| ps.iter().map(|p| p[0].as_f64().unwrap()).sum::<f64>() / ps.len() as f64;
    assert!((mean(coarse) - mean(points)).abs() < 25.0, "bucket means keep the level");
    assert!(!answer[1]["datapoints"].as_array().unwrap().is_empty(), "window series");
    assert_eq!(answer[2]["type"], "table");
    assert_eq!(answer[2]["columns"][1]["text"], "driver");
    // A series asked for as a table (SimpleJSON's "Format as: Table"): rows of time and value,
    // the same points as the series.
    let (status, body) =
        http_post(&addr, "/grafana/query", &query_body(from, to, 100_000, json!([{ "target": target, "refId": "T", "type": "table" }])));
    assert_eq!(status, 200, "{body}");
    let as_table: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(as_table[0]["type"], "table");
    assert_eq!((as_table[0]["columns"][0]["text"].as_str(), as_table[0]["columns"][1]["text"].as_str()), (Some("time"), Some(target.as_str())));
    let rows = as_table[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), points.len());
    assert!(rows.iter().zip(points).all(|(r, p)| r[0] == p[1] && r[1] == p[0]), "rows are (time, value) of the series' points");

    // Annotations: exactly the alerts the job published.
    let alerts = tail(b, "f1-alerts");
    assert!(!alerts.is_empty() && !truth.is_empty());
    let annotation = json!({ "range": { "from": from, "to": to }, "annotation": { "name": "alerts", "enable": true, "iconColor": "red", "query": "" }, "rangeRaw": { "from": "now-6h", "to": "now" } });
    let (status, body) = http_post(&addr, "/grafana/annotations", annotation.to_string().as_bytes());
    assert_eq!(status, 200);
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(events.len(), alerts.len(), "{events:?}");
    assert!(events.iter().all(|e| e["tags"].as_array().unwrap().len() == 3 && e["time"].as_i64().unwrap() > 1_678_000_000_000));
    let one_driver = json!({ "range": { "from": from, "to": to }, "annotation": { "name": "alerts", "query": driver } });
    let (_, body) = http_post(&addr, "/grafana/annotations", one_driver.to_string().as_bytes());
    let mine: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(mine.len(), alerts.iter().filter(|a| a["key"] == driver.as_str()).count());

    // The shipped dashboards ask only for what the bridge answers.
    for file in ["telemetry", "alerts"] {
        let path = format!("{}/grafana/dashboards/{file}.json", env!("CARGO_MANIFEST_DIR"));
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            let targets: Vec<Value> = panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| json!({ "target": t["target"].as_str().unwrap().replace("$driver", &driver), "refId": t["refId"], "type": t["type"] }))
                .collect();
            let (status, body) = http_post(&addr, "/grafana/query", &query_body(from, to, 500, Value::Array(targets)));
            assert_eq!(status, 200, "{file}: panel {}: {body}", panel["title"]);
        }
    }

    plugin_contract(&addr, from, to, &driver, alerts.len(), alerts.iter().filter(|a| a["key"] == driver.as_str()).count());

    // Bad requests: 4xx with a message, never a crash.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("unknown target", query_body(from, to, 100, json!([{ "target": "NOBODY:speed", "refId": "A" }])), 400, "unknown target `NOBODY:speed`"),
        ("unknown channel", query_body(from, to, 100, json!([{ "target": format!("{driver}:boost"), "refId": "A" }])), 400, "unknown target"),
        ("inverted range", query_body(to, from, 100, json!([{ "target": target, "refId": "A" }])), 400, "after it ends"),
        ("huge maxDataPoints", query_body(from, to, 50_000_000, json!([{ "target": target, "refId": "A" }])), 400, "maxDataPoints"),
        ("not a time", query_body("yesterday", to, 100, json!([{ "target": target, "refId": "A" }])), 400, "RFC 3339"),
        ("invalid JSON", b"{\"range\": ".to_vec(), 400, "invalid request JSON"),
        ("wrong shape", br#"{"targets": 7}"#.to_vec(), 400, "invalid request JSON"),
        ("empty target", query_body(from, to, 100, json!([{ "refId": "A" }])), 400, "names no metric"),
        ("2 MB body", vec![b' '; 2 << 20], 413, "request body over"),
    ];
    for (what, body, want, message) in cases {
        let (status, text) = http_post(&addr, "/grafana/query", &body);
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.contains(message), "{what}: {text}");
    }
    assert_eq!(http_get(&addr, "/grafana/query").0, 405);
    assert_eq!(http_get(&addr, "/grafana/nothing").0, 404);

    // The work of one request is bounded: a 1 MiB body naming a real series thousands of times
    // over the whole range is refused before any of it is computed (on dc98ffd it answered with
    // every point of every copy, holding the bridge's one thread), and /health and /metrics
    // answer while such requests arrive from four clients at once.
    let many: Vec<Value> = (0..20_000).map(|i| json!({ "target": target, "refId": format!("R{i}") })).collect();
    let heavy = query_body(from, to, 100_000, Value::Array(many));
    assert!(heavy.len() > 500_000 && heavy.len() < 1 << 20, "{} bytes", heavy.len());
    let (status, text) = http_post(&addr, "/grafana/query", &heavy);
    assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
    assert!(text.contains("20000 targets in one query; at most 100"), "{text}");
    let wide: Vec<Value> = (0..50).map(|i| json!({ "target": target, "refId": format!("R{i}") })).collect();
    // Without intervalMs (which narrows maxDataPoints to the range over the interval), 50 x
    // 100,000 points are asked for.
    let mut wide_body: Value = serde_json::from_slice(&query_body(from, to, 100_000, Value::Array(wide))).unwrap();
    wide_body.as_object_mut().unwrap().remove("intervalMs");
    let (status, text) = http_post(&addr, "/grafana/query", wide_body.to_string().as_bytes());
    assert_eq!((status, text.contains("at most 2000000 per query")), (400, true), "{}", &text[..text.len().min(300)]);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (addr, heavy) = (addr.clone(), heavy.clone());
            std::thread::spawn(move || (0..5).map(|_| http_post(&addr, "/grafana/query", &heavy).0).collect::<Vec<u16>>())
        })
        .collect();
    for _ in 0..10 {
        assert_eq!(http_get(&addr, "/health").0, 200, "/health answers under load");
        assert_eq!(http_get(&addr, "/metrics").0, 200, "/metrics answers under load");
    }
    for client in load {
        assert!(client.join().unwrap().iter().all(|status| *status == 400));
    }
    assert_eq!(http_get(&addr, "/health").0, 200, "the job is still up");
    assert!(job.0.try_wait().unwrap().is_none(), "the job is still running");
    terminate(&mut job);
}

/// What the current JSON plugin and the legacy SimpleJSON plugin send, beyond /query and /search.
fn plugin_contract(addr: &str, from: &str, to: &str, driver: &str, alerts: usize, driver_alerts: usize) {
    // Test connection: the base URL, with and without the trailing slash.
    for path in ["/grafana", "/grafana/"] {
        assert_eq!(http_get(addr, path).0, 200, "{path}");
    }
    // Payload options (pitwall's metrics take none) and the metric list's `payloads`.
    let (status, body) = http_post(addr, "/grafana/metric-payload-options", br#"{"metric":"VER:speed","payload":{},"name":"driver"}"#);
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (_, body) = http_post(addr, "/grafana/metrics", br#"{"metric":"","payload":{}}"#);
    assert!(serde_json::from_str::<Vec<Value>>(&body).unwrap().iter().all(|m| m["payloads"] == json!([])));
    // Template variables: the current plugin wraps the query in `payload`, older ones do not.
    let range = json!({ "from": from, "to": to, "raw": { "from": "now-6h", "to": "now" } });
    for request in [json!({ "payload": { "target": "drivers" }, "range": range }), json!({ "target": "drivers" })] {
        let (status, body) = http_post(addr, "/grafana/variable", request.to_string().as_bytes());
        let values: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 200);
        assert!(values.iter().any(|v| v["__text"] == driver && v["__value"] == driver), "{body}");
    }
    // Ad hoc filters: keys, values, and their effect on tables, annotations and series.
    let (_, body) = http_post(addr, "/grafana/tag-keys", b"{}");
    let keys: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(keys.iter().map(|k| k["text"].as_str().unwrap()).collect::<Vec<_>>(), ["driver", "kind", "severity"]);
    let (_, body) = http_post(addr, "/grafana/tag-values", br#"{"key":"driver"}"#);
    let drivers: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(drivers.iter().any(|d| d["text"] == driver), "{body}");
    assert_eq!(http_post(addr, "/grafana/tag-values", br#"{"key":"colour"}"#).0, 400);
    let query = |targets: Value, filters: Value, max_points: u64, interval_ms: u64| {
        let body = json!({
            "range": range, "interval": format!("{interval_ms}ms"), "intervalMs": interval_ms, "maxDataPoints": max_points,
            "targets": targets, "adhocFilters": filters,
        });
        let (status, text) = http_post(addr, "/grafana/query", body.to_string().as_bytes());
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    // Annotations through /query (the current plugin): one row per published alert.
    let answer = query(json!([{ "target": "annotations", "refId": "Anno" }]), json!([]), 1_000, 1_000);
    let columns: Vec<&str> = answer[0]["columns"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(columns, ["time", "timeEnd", "title", "text", "tags"]);
    assert_eq!(answer[0]["rows"].as_array().unwrap().len(), alerts);
    let mine = json!([{ "key": "driver", "operator": "=", "value": driver }]);
    let answer =
        query(json!([{ "target": "annotations", "refId": "A" }, { "target": "alerts", "refId": "B", "type": "table" }]), mine.clone(), 1_000, 1_000);
    assert_eq!(answer[0]["rows"].as_array().unwrap().len(), driver_alerts);
    assert_eq!(answer[1]["rows"].as_array().unwrap().len(), driver_alerts);
    let others = json!([{ "key": "driver", "operator": "!=", "value": driver }]);
    let answer = query(json!([{ "target": format!("{driver}:speed"), "refId": "A" }]), others, 1_000, 1_000);
    assert_eq!(answer[0]["datapoints"], json!([]), "a filtered-out driver's series is empty");
    // Kind and severity filters narrow alerts, not a driver's series.
    let high = json!([{ "key": "severity", "operator": "=", "value": "high" }]);
    let answer = query(
        json!([{ "target": format!("{driver}:speed"), "refId": "A" }, { "target": "alerts", "refId": "B", "type": "table" }]),
        high,
        1_000,
        1_000,
    );
    assert!(!answer[0]["datapoints"].as_array().unwrap().is_empty(), "a severity filter keeps the series");
    assert!(answer[1]["rows"].as_array().unwrap().iter().all(|row| row[3] == "high"), "{}", answer[1]);
    // Never more points than maxDataPoints, nor finer than intervalMs: the 2 h range at a
    // 10-minute interval is 12 buckets at most, though maxDataPoints allows 1,000.
    let answer = query(json!([{ "target": format!("{driver}:speed"), "refId": "A" }]), mine, 1_000, 600_000);
    let points = answer[0]["datapoints"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 12, "{} points", points.len());
    assert!(points.windows(2).all(|w| w[0][1].as_f64() < w[1][1].as_f64()), "ascending time");
    let answer = query(json!([{ "target": format!("{driver}:speed"), "refId": "A" }]), json!([]), 7, 1);
    assert!(answer[0]["datapoints"].as_array().unwrap().len() <= 7);
    // CORS: an allowed origin's preflight (no token) and calls get the headers; others do not.
    let preflight = "Origin: http://grafana.test:3000\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n";
    let (status, head, _) = http_exchange(addr, "OPTIONS", "/grafana/query", preflight, &[]);
    let head = head.to_ascii_lowercase();
    assert_eq!(status, 204);
    assert!(
        head.contains("access-control-allow-origin: http://grafana.test:3000") && head.contains("access-control-allow-headers: authorization"),
        "{head}"
    );
    let (_, head, _) = http_exchange(addr, "POST", "/grafana/search", "Origin: http://grafana.test:3000\r\n", b"{}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: http://grafana.test:3000"), "{head}");
    let (_, head, _) = http_exchange(addr, "POST", "/grafana/search", "Origin: http://evil.test\r\n", b"{}");
    assert!(!head.to_ascii_lowercase().contains("access-control-allow-origin"), "{head}");
}

/// SIGTERM, then wait for a clean exit.
fn terminate(job: &mut KillOnDrop) {
    let _ = std::process::Command::new("kill").args(["-TERM", &job.0.id().to_string()]).status();
    wait_until("the job to stop on SIGTERM", Duration::from_secs(30), || holds(job.0.try_wait().unwrap().is_some(), String::new));
}

/// Epoch ms as the RFC 3339 time Grafana sends.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn a_live_replay_is_charted_at_wall_clock_time_and_its_session_time_stays_queryable() {
    let (tansu, dir, _) = tansu_with_race(2, 1);
    let b = tansu.brokers.as_str();
    let rows = rows_per_driver(dir.path());
    let bridge = format!("127.0.0.1:{}", free_port());
    let _job =
        KillOnDrop(pitwall_command(&["run", "--brokers", b, "-w", "2", "--bridge", &bridge]).stdout(std::process::Stdio::null()).spawn().unwrap());
    wait_until("the bridge to listen", Duration::from_secs(90), || std::net::TcpStream::connect(&bridge).map(drop).map_err(|e| e.to_string()));
    // Replayed live (paced), as the demo and the seed's producers do.
    let started = chrono::Utc::now().timestamp_millis();
    pitwall(&["produce", "telemetry", "--brokers", b, "--input", &path_str(dir.path()), "--rate", "4000", "--quiet"]);
    let produced = chrono::Utc::now().timestamp_millis();
    let driver = rows.keys().next().unwrap().clone();
    // Grafana's "last 15 minutes".
    let (from, to) = (rfc3339(produced - 15 * 60_000), rfc3339(produced + 60_000));
    // Grafana's body for a panel with a 1 ms interval: the whole replay took well under a second.
    let series = |target: String| -> Vec<Value> {
        let body = json!({
            "range": { "from": from, "to": to, "raw": { "from": "now-15m", "to": "now" } },
            "intervalMs": 1, "maxDataPoints": 100_000, "targets": [{ "target": target, "refId": "A" }]
        });
        let (status, body) = http_post(&bridge, "/grafana/query", body.to_string().as_bytes());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()[0]["datapoints"].as_array().unwrap().clone()
    };
    let speed = wait_until("every sample charted in the last 15 minutes", Duration::from_secs(60), || {
        let points = series(format!("{driver}:speed"));
        holds(points.len() == rows[&driver], || {
            let (status, body) = http_post(
                &bridge,
                "/grafana/query",
                &query_body(&rfc3339(0), &rfc3339(4_102_444_800_000), 100_000, json!([{ "target": format!("{driver}:speed"), "refId": "A" }])),
            );
            let all: Value = serde_json::from_str(&body).unwrap_or_default();
            let times: Vec<i64> =
                all[0]["datapoints"].as_array().map(|a| a.iter().map(|p| p[1].as_f64().unwrap() as i64).collect()).unwrap_or_default();
            format!(
                "{} of {} in {from}..{to}; all {status}: {} points, {:?}..{:?}",
                points.len(),
                rows[&driver],
                times.len(),
                times.first(),
                times.last()
            )
        })
        .map(|_| points.clone())
    });
    let times: Vec<i64> = speed.iter().map(|p| p[1].as_f64().unwrap() as i64).collect();
    assert!(
        times.iter().all(|t| (started..=produced).contains(t)),
        "charted when produced: {}..{} not within {started}..{produced}",
        times[0],
        times[times.len() - 1]
    );
    // The session's own time is a series beside it, at the same wall times: ascending session
    // seconds, spanning what the replay took times its speed.
    let session = series(format!("{driver}:session_time"));
    assert_eq!(session.len(), speed.len());
    assert!(session.iter().zip(&speed).all(|(s, p)| s[1] == p[1]));
    let seconds: Vec<f64> = session.iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]) && seconds[seconds.len() - 1] > seconds[0], "{:?}..{:?}", seconds.first(), seconds.last());
    // Windows and alerts are placed next to their samples: in the same wall-clock range.
    let windows = wait_until("window results charted", Duration::from_secs(60), || {
        let points = series(format!("{driver}:window.speed_mean"));
        holds(!points.is_empty(), String::new).map(|_| points.clone())
    });
    assert!(windows.iter().all(|p| (started - 1_000..=produced + 60_000).contains(&(p[1].as_f64().unwrap() as i64))), "{windows:?}");
    let annotation = json!({ "range": { "from": from, "to": to }, "annotation": { "name": "alerts", "enable": true, "query": "" } });
    let (_, body) = http_post(&bridge, "/grafana/annotations", annotation.to_string().as_bytes());
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(events.iter().all(|e| (started - 1_000..=produced + 60_000).contains(&e["time"].as_i64().unwrap())), "{events:?}");
}
