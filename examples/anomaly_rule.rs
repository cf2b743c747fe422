//! One anomaly rule on hand-made samples: a car that loses 200 km/h in a second without
//! changing down (a crash) raises one `sudden_speed_drop` alert, however long it stays slow.
//!
//! `cargo run --example anomaly_rule`

use pitwall_dataflows::anomalies::{detect_in_order, AnomalyConfig};
use pitwall_dataflows::records::TelemetryRecord;

fn sample(ms: u64, speed: f64, gear: u8) -> TelemetryRecord {
    TelemetryRecord {
        lap: Some(12),
        rpm: 11_000.0 * speed.max(30.0) / 300.0,
        speed,
        gear,
        throttle: 0.0,
        brake: true,
        drs: 0,
        ..TelemetryRecord::example("ALO", ms)
    }
}

fn main() {
    let mut samples: Vec<TelemetryRecord> = (0..10).map(|i| sample(i * 125, 300.0, 8)).collect();
    samples.extend((0..16).map(|i| sample(1_250 + i * 125, (300.0 - 200.0 * i as f64 / 8.0).max(5.0), 8)));
    for alert in detect_in_order(&AnomalyConfig::default(), &samples) {
        println!("{} [{:?}] {} at {} ms: {}", alert.kind.name(), alert.severity, alert.driver, alert.session_time_ms, alert.message);
    }
}
