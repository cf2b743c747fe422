//! Telemetry predictions end to end on a Tansu broker: `run --pipelines telemetry,predictions`
//! publishes one prediction per sliding window of each driver to `f1-predictions`, keyed (and
//! so partitioned) by model type, with finite values.

mod support;

use std::collections::BTreeSet;

use pitwall_dataflows::partition::key_partition;
use serde_json::Value;
use support::*;

#[test]
fn one_prediction_per_sliding_window_keyed_by_model_type() {
    let (tansu, dir, _) = tansu_with_race(4, 1);
    let b = tansu.brokers.as_str();
    produce_race(b, dir.path());
    let report = run_report(&pitwall(&["run", "--brokers", b, "-w", "2", "--exit-at-end", "--pipelines", "telemetry,predictions"]));

    let windows: BTreeSet<(String, u64)> = tail(b, "f1-windows")
        .into_iter()
        .map(|m| m["value"].clone())
        .filter(|w| w["window"]["type"] == "sliding")
        .map(|w| (w["driver"].as_str().unwrap().to_string(), w["start_ms"].as_u64().unwrap()))
        .collect();
    let messages = tail(b, "f1-predictions");
    assert!(windows.len() > 100, "{} sliding windows", windows.len());
    assert_eq!(messages.len(), windows.len(), "one prediction per sliding window");
    assert_eq!(report["predictions"], windows.len() as u64, "{report}");
    let predicted: BTreeSet<(String, u64)> =
        messages.iter().map(|m| (m["value"]["driver"].as_str().unwrap().to_string(), m["value"]["window_start_ms"].as_u64().unwrap())).collect();
    assert_eq!(predicted, windows, "each window predicted once");
    let partitions = 3; // `topics create` default for f1-predictions
    for m in &messages {
        let p: &Value = &m["value"];
        assert_eq!(m["key"], "pace_next5s");
        assert_eq!(m["partition"], key_partition(b"pace_next5s", partitions), "partitioned by model type");
        assert_eq!(
            (p["model_type"].as_str(), p["model"].as_str(), p["model_version"].as_i64()),
            (Some("pace_next5s"), Some("pace_next5s.onnx"), Some(1))
        );
        let value = p["value"].as_f64().unwrap();
        assert!(value.is_finite() && (0.0..=380.0).contains(&value), "{p}");
        assert_eq!(p["window_end_ms"].as_u64().unwrap() - p["window_start_ms"].as_u64().unwrap(), 5_000);
    }
    // The model has learnt something: its predictions vary with the window.
    let distinct: BTreeSet<i64> = messages.iter().map(|m| m["value"]["value"].as_f64().unwrap().round() as i64).collect();
    assert!(distinct.len() > 20, "{distinct:?}");
}
