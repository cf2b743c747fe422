//! Telemetry as FastF1 users save it, end to end against Tansu. `support/fastf1_export.py`
//! rewrites one generated driver with pandas/pyarrow the way FastF1 frames are saved (BOM,
//! index column, no Driver column, naive dates, fraction-less whole-second timedeltas, empty
//! optional cells, fractional or integer channels, sentinels, DRS codes, backward Distance,
//! jitter, gaps of several seconds) and adds a crash. Checked: the Parquet export replays the
//! same records as the CSV; car_data + pos_data merge; a whole session in one command with drivers named by the files; a pos_data file alone is a clear error;
//! every row is processed (none in the DLQ), the sentinels are counted as data-quality flags,
//! and the crash is alerted while the gaps, sentinels and codes raise nothing.

mod support;

use std::path::Path;
use std::process::Stdio;

use pitwall_connectors::files::{read_telemetry, FileOptions};
use serde_json::Value;
use support::*;

/// One generated driver (no anomalies injected) saved as FastF1 exports; returns the truth.
fn exports(dir: &Path) -> Value {
    let generated = dir.join("generated");
    pitwall(&["gen", "race", "--drivers", "1", "--laps", "3", "--out", &path_str(&generated), "--format", "csv", "--seed", "42", "--no-anomalies"]);
    let source = std::fs::read_dir(&generated).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "csv")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fastf1_export.py");
    let output = std::process::Command::new("python3").arg(&script).arg(&source).arg(dir).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "fastf1_export.py failed (pandas + pyarrow come from scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap()
}

/// `produce telemetry --max-rate` of `inputs`, with `--driver` or else `--driver-from-name`;
/// returns what it printed on stderr.
fn produce(brokers: &str, inputs: &[&Path], driver: Option<&str>) -> String {
    let mut args = vec!["produce".to_string(), "telemetry".into(), "--brokers".into(), brokers.into()];
    match driver {
        Some(driver) => args.extend(["--driver".to_string(), driver.into()]),
        None => args.push("--driver-from-name".into()),
    }
    for input in inputs {
        args.extend(["--input".to_string(), path_str(input)]);
    }
    args.extend(["--max-rate".to_string(), "--quiet".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = wait_with_timeout(pitwall_command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), "produce", COMMAND_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "produce failed: {stderr}");
    stderr
}

#[test]
fn fastf1_exports_replay_every_row_and_the_crash_is_alerted() {
    let dir = temp_dir();
    let truth = exports(dir.path());
    let n = |key: &str| truth[key].as_u64().unwrap();
    let file = |name: &str| dir.path().join(name);

    // The Parquet file pandas wrote replays exactly the records of the CSV it wrote.
    let options = FileOptions { driver: Some("VER".into()), ..FileOptions::default() };
    let csv = read_telemetry(&file("telemetry.csv"), &options).unwrap();
    let parquet = read_telemetry(&file("telemetry.parquet"), &options).unwrap();
    assert_eq!(csv.len() as u64, n("rows"));
    assert!(csv == parquet, "CSV and Parquet differ at row {:?}", csv.iter().zip(&parquet).position(|(a, b)| a != b));
    assert!(csv.iter().any(|r| r.rpm.fract() != 0.0) && csv.first().unwrap().distance < 0.0);

    // A pos_data file alone: a clear error naming what is missing, nothing sent.
    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    pitwall(&["topics", "create", "--brokers", b]);
    let alone = pitwall_command(&["produce", "telemetry", "--brokers", b, "--input", &path_str(&file("pos_data.csv")), "--driver", "LEC", "--quiet"])
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success(), "a pos_data file alone must be refused");
    assert!(message.contains("pos_data.csv") && message.contains("RPM, Speed, nGear, Throttle, Brake") && message.contains("car_data"), "{message}");

    // A whole session in one command, drivers named by the files: the merged export as VER,
    // car_data + pos_data of the same laps as HAM (merged on SessionTime). HAM shares VER's
    // partition: one replay keeps the partition in event-time order, so nothing is late.
    let session = dir.path().join("session");
    std::fs::create_dir(&session).unwrap();
    for (from, to) in [("telemetry.csv", "VER.csv"), ("car_data.csv", "HAM_car.csv"), ("pos_data.csv", "HAM_pos.csv")] {
        std::fs::copy(file(from), session.join(to)).unwrap();
    }
    let said = produce(b, &[&session], None);
    let flagged = |name: &str| -> u64 {
        let at = said.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {said}")) + name.len() + 1;
        said[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    // VER's sentinels, plus HAM's car samples' and the position samples filled from them.
    assert!(flagged("throttle_invalid") >= n("throttle_invalid") && flagged("sampling_gap") >= 2 * n("gaps"), "{said}");
    let report = run_report(&pitwall(&["run", "--brokers", b, "-w", "2", "--exit-at-end"]));
    assert_eq!(report["records"].as_u64().unwrap(), n("rows") + n("car_rows") + n("pos_rows"), "every row processed: {report}");
    assert_eq!((report["dead_letters"].as_u64(), report["late"].as_u64()), (Some(0), Some(0)), "{report}");
    let flags = &report["data_quality_flags"];
    assert!(flags["throttle_invalid"].as_u64().unwrap() >= n("throttle_invalid") && flags["drs_unknown_code"].as_u64().unwrap() > 0, "{report}");

    // The crash is alerted for both drivers; nothing is alerted before it (gaps, sentinels,
    // DRS codes, jitter and backward Distance are not anomalies).
    let crash = truth["crash_start_ms"].as_u64().unwrap();
    let alerts: Vec<Value> = tail(b, "f1-alerts").into_iter().map(|m| m["value"].clone()).collect();
    for driver in ["VER", "HAM"] {
        let mine: Vec<&Value> = alerts.iter().filter(|a| a["driver"] == driver).collect();
        let crash_alert =
            mine.iter().find(|a| a["kind"] == "sudden_speed_drop" && (crash..crash + 2_500).contains(&a["session_time_ms"].as_u64().unwrap()));
        assert!(crash_alert.is_some(), "{driver}: the crash at {crash} ms was not alerted: {mine:#?}");
        let early: Vec<&&Value> = mine.iter().filter(|a| a["session_time_ms"].as_u64().unwrap() < crash).collect();
        assert!(early.is_empty(), "{driver}: alerts before the crash: {early:#?}");
    }
}
