//! Live queries over HTTP on a two-process, four-worker job (`-n 2 -w 2`, Tansu): queries are
//! registered on process 0's bridge before the race arrives, their results follow the windows
//! (checked against the published `f1-windows`), the change stream pushes the snapshot then
//! +/- rows, bad specs are refused, and a deleted query is gone.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn post(addr: &str, body: Value) -> (u16, Value) {
    let (status, text) = http_post(addr, "/v1/queries", body.to_string().as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A query's current rows (their drivers) and the event time they reflect.
fn answer(addr: &str, id: u64) -> (Vec<String>, u64) {
    let (_, body) = http_get(addr, &format!("/v1/queries/{id}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    (v["rows"].as_array().unwrap().iter().map(|r| r["driver"].as_str().unwrap().to_string()).collect(), v["time"].as_u64().unwrap())
}

fn milli(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1_000.0).round() as i64
}

/// Each driver's newest published sliding window ending at or before `t`.
fn newest_by(windows: &[Value], t: u64) -> BTreeMap<String, &Value> {
    let mut newest: BTreeMap<String, &Value> = BTreeMap::new();
    for w in windows.iter().filter(|w| w["end_ms"].as_u64().unwrap() <= t) {
        let driver = w["driver"].as_str().unwrap().to_string();
        if newest.get(&driver).is_none_or(|n| n["end_ms"].as_u64() < w["end_ms"].as_u64()) {
            newest.insert(driver, w);
        }
    }
    newest
}

/// The `k` drivers with the highest mean speed in `newest`, as a top-k query ranks them.
fn top_by_mean_speed(newest: &BTreeMap<String, &Value>, k: usize) -> Vec<String> {
    let mut ranked: Vec<(i64, String)> = newest.iter().map(|(d, w)| (-milli(&w["speed"]["mean"]), d.clone())).collect();
    ranked.sort();
    ranked.into_iter().take(k).map(|(_, d)| d).collect()
}

fn sliding_windows(brokers: &str) -> Vec<Value> {
    tail(brokers, "f1-windows").into_iter().map(|m| m["value"].clone()).filter(|w| w["window"]["type"] == "sliding").collect()
}

/// One process with a bridge (the shape whose query dataflow is fed only because the bridge is
/// there): a top-k query answers from the windows as they are published.
#[test]
fn a_single_process_job_with_a_bridge_answers_queries() {
    let (tansu, dir, _) = tansu_with_race(6, 1);
    let b = tansu.brokers.as_str();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("job.log");
    let _job = KillOnDrop(
        pitwall_command(&["run", "--brokers", b, "-w", "2", "--bridge", &addr])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_listening(&addr, Duration::from_secs(60));
    let (status, top) = post(&addr, json!({ "kind": "top_k", "metric": "speed_mean", "k": 3 }));
    assert_eq!(status, 201, "{top}");
    let top = top["id"].as_u64().unwrap();
    produce_race(b, dir.path());
    wait_until_every("the query to match the windows", Duration::from_secs(90), Duration::from_millis(500), || {
        let (got, time) = answer(&addr, top);
        let windows = sliding_windows(b);
        let newest = newest_by(&windows, time);
        let expected = top_by_mean_speed(&newest, 3);
        holds(newest.len() == 6 && time > 3_630_000 && got == expected, || {
            let ends: BTreeMap<&String, u64> = newest.iter().map(|(d, w)| (d, w["end_ms"].as_u64().unwrap())).collect();
            format!(
                "{got:?} vs {expected:?} at {time}; {} sliding windows published, each driver's newest by then: {ends:?}; the job's log:\n{}",
                windows.len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    });
}

#[test]
fn queries_follow_the_windows_across_two_processes() {
    let (tansu, dir, _) = tansu_with_race(6, 1);
    let b = tansu.brokers.as_str();

    let hosts = hostfile(dir.path(), "hosts", 2);
    let bridges = [format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
    let _processes: Vec<KillOnDrop> = (0..2)
        .map(|p| {
            let args = ["run", "--brokers", b, "-w", "2", "-n", "2", "-p", &p.to_string(), "-h", &path_str(&hosts), "--bridge", &bridges[p]];
            KillOnDrop(pitwall_command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
        })
        .collect();
    let addr = bridges[0].as_str();
    wait_listening(addr, Duration::from_secs(60));

    // Bad specs are refused with a message.
    for (bad, words) in [
        (json!({ "kind": "top_k", "metric": "boost", "k": 3 }), "unknown metric"),
        (json!({ "kind": "top_k", "metric": "speed_mean", "k": 0 }), "k must be"),
        (json!({ "kind": "median", "metric": "speed_mean" }), "invalid query spec"),
        (json!({ "kind": "above", "metric": "speed_max", "threshold": "fast" }), "invalid query spec"),
    ] {
        let (status, answer) = post(addr, bad.clone());
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(words), "{bad}: {answer}");
    }
    let (status, top) = post(addr, json!({ "kind": "top_k", "metric": "speed_mean", "k": 3 }));
    assert_eq!(status, 201, "{top}");
    let top = top["id"].as_u64().unwrap();
    let (_, fast) = post(addr, json!({ "kind": "above", "metric": "speed_max", "threshold": 300.0 }));
    let fast = fast["id"].as_u64().unwrap();
    let (status, counts) = post(addr, json!({ "kind": "alert_counts", "seconds": 600 }));
    assert_eq!(status, 201, "{counts}");
    let counts = counts["id"].as_u64().unwrap();
    // The other process does not serve queries (its workers feed process 0's worker 0).
    wait_listening(&bridges[1], Duration::from_secs(30));
    assert_eq!(http_get(&bridges[1], &format!("/v1/queries/{top}")).0, 404);

    // The change stream, opened before any data: the snapshot first, then changes.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET /v1/queries/{top}/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut lines = BufReader::new(stream).lines();

    produce_race(b, dir.path());

    let mut events = Vec::new();
    while events.len() < 2 {
        let line = lines.next().expect("the stream stays open").expect("readable");
        if let Some(data) = line.strip_prefix("data: ") {
            events.push(serde_json::from_str::<Value>(data).unwrap());
        }
    }
    assert!(events[0]["rows"].is_array(), "a snapshot first: {}", events[0]);
    let changes = events[1]["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["diff"] == 1), "rows come in as +1: {changes:?}");

    // Each answer equals the query recomputed over the published windows up to the event time
    // the answer says it reflects (results are final up to the sliding windows' frontier).
    wait_until_every("the queries to match the windows", Duration::from_secs(90), Duration::from_millis(500), || {
        let ((got_top, top_time), (mut got_fast, fast_time)) = (answer(addr, top), answer(addr, fast));
        got_fast.sort();
        let windows = sliding_windows(b);
        let newest = newest_by(&windows, top_time);
        let expected_top = top_by_mean_speed(&newest, 3);
        let mut expected_fast: Vec<String> =
            newest_by(&windows, fast_time).iter().filter(|(_, w)| milli(&w["speed"]["max"]) > 300_000).map(|(d, _)| d.clone()).collect();
        expected_fast.sort();
        // Well into the race: every driver has windows, and the answers match.
        holds(newest.len() == 6 && top_time > 3_630_000 && got_top == expected_top && got_fast == expected_fast, || {
            format!("top {got_top:?} vs {expected_top:?} at {top_time}, above {got_fast:?} vs {expected_fast:?} at {fast_time}")
        })
    });

    // Alert counts over 10 minutes: per kind/severity, never more than were published, and the
    // alerts raised before the query's frontier are there (exactness is the oracle's job:
    // dataflows/tests/queries_oracle.rs; the newest alerts wait for the frontier in live mode).
    let alerts = tail(b, "f1-alerts");
    let mut published: BTreeMap<String, f64> = BTreeMap::new();
    for a in &alerts {
        *published.entry(format!("{}/{}", a["value"]["kind"].as_str().unwrap(), a["value"]["severity"].as_str().unwrap())).or_default() += 1.0;
    }
    wait_until_every("the alert counts to cover the published alerts", Duration::from_secs(60), Duration::from_millis(500), || {
        let (_, body) = http_get(addr, &format!("/v1/queries/{counts}"));
        let rows: Value = serde_json::from_str(&body).unwrap();
        let rows = rows["rows"].as_array().unwrap().clone();
        for r in &rows {
            let label = r["driver"].as_str().unwrap();
            assert!(r["value"].as_f64().unwrap() <= published.get(label).copied().unwrap_or(0.0), "{label}: {r} vs {published:?}");
        }
        let total: f64 = rows.iter().map(|r| r["value"].as_f64().unwrap()).sum();
        holds(total >= (alerts.len() as f64 - 2.0).max(1.0), || format!("alert counts {total} of {} alerts: {rows:?}", alerts.len()))
    });

    // Listing, deleting.
    let (_, list) = http_get(addr, "/v1/queries");
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap().as_array().unwrap().len(), 3);
    let (status, _) = http_request(addr, "DELETE", &format!("/v1/queries/{fast}"), "", &[]);
    assert_eq!(status, 204);
    assert_eq!(http_get(addr, &format!("/v1/queries/{fast}")).0, 404);
}
