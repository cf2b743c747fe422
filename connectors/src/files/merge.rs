//! A driver's car_data and pos_data, merged on SessionTime the way FastF1's
//! `Telemetry.merge_channels` merges them: every sample of both is kept (the union of the
//! timestamps, car samples first on a tie); each car sample gets X/Y/Z interpolated linearly
//! between the position samples around it and Status filled forward (then backward), and each
//! position sample gets Speed, RPM, Throttle, Distance and RelativeDistance interpolated linearly
//! between the car samples around it and nGear, Brake, DRS and LapNumber filled forward (then
//! backward). An invalid throttle (104) is filled, not interpolated. Past either end, the
//! nearest sample's values are used.

use std::collections::BTreeMap;

use pitwall_dataflows::records::{SmolStr, TelemetryRecord};

use super::{Channels, FileError, TelemetryFile};

/// Merges every position-only file into its driver's car data; other files pass through.
pub fn merge_files(files: Vec<TelemetryFile>) -> Result<Vec<TelemetryRecord>, FileError> {
    let mut out = Vec::new();
    let mut car: BTreeMap<SmolStr, Vec<TelemetryRecord>> = BTreeMap::new();
    let mut pos: BTreeMap<SmolStr, (std::path::PathBuf, Vec<TelemetryRecord>)> = BTreeMap::new();
    for file in files {
        match file.channels {
            Channels::Pos => {
                for record in file.records {
                    pos.entry(record.driver.clone()).or_insert_with(|| (file.path.clone(), Vec::new())).1.push(record);
                }
            }
            Channels::Car => {
                for record in file.records {
                    car.entry(record.driver.clone()).or_default().push(record);
                }
            }
            Channels::Merged => out.extend(file.records),
        }
    }
    for (driver, (path, positions)) in pos {
        let cars = car.remove(&driver).ok_or(FileError::PositionOnly { path, driver: driver.to_string() })?;
        out.extend(merge_car_and_pos(cars, positions));
    }
    out.extend(car.into_values().flatten());
    Ok(out)
}

fn by_time(mut records: Vec<TelemetryRecord>) -> Vec<TelemetryRecord> {
    records.sort_by_key(|r| r.session_time_ms);
    records
}

/// The samples of `series` just before (or at) and just after `time`, and the weight of the
/// later one (0 when there is only one side).
fn around(series: &[TelemetryRecord], time: u64) -> Option<(&TelemetryRecord, &TelemetryRecord, f64)> {
    let next = series.partition_point(|r| r.session_time_ms < time);
    let before = series.get(next.checked_sub(1).unwrap_or(next)).or(series.first())?;
    let after = series.get(next).unwrap_or(before);
    let before = if before.session_time_ms > time { after } else { before };
    let span = after.session_time_ms.saturating_sub(before.session_time_ms);
    let weight = if span == 0 { 0.0 } else { (time.saturating_sub(before.session_time_ms)) as f64 / span as f64 };
    Some((before, after, weight.clamp(0.0, 1.0)))
}

fn lerp(a: f64, b: f64, weight: f64) -> f64 {
    a + (b - a) * weight
}

/// One driver's car samples and position samples, merged (see the module doc).
pub fn merge_car_and_pos(car: Vec<TelemetryRecord>, pos: Vec<TelemetryRecord>) -> Vec<TelemetryRecord> {
    let (car, pos) = (by_time(car), by_time(pos));
    let mut merged = Vec::with_capacity(car.len() + pos.len());
    for sample in &car {
        let mut out = sample.clone();
        if let Some((before, after, w)) = around(&pos, sample.session_time_ms) {
            out.x = lerp(before.x, after.x, w);
            out.y = lerp(before.y, after.y, w);
            out.z = lerp(before.z, after.z, w);
            out.status = before.status.clone().or_else(|| after.status.clone());
        }
        merged.push(out);
    }
    for sample in &pos {
        let mut out = sample.clone();
        if let Some((before, after, w)) = around(&car, sample.session_time_ms) {
            out.speed = lerp(before.speed, after.speed, w);
            out.rpm = lerp(before.rpm, after.rpm, w);
            let valid = |t: f64| t <= 100.0;
            out.throttle = if valid(before.throttle) && valid(after.throttle) { lerp(before.throttle, after.throttle, w) } else { before.throttle };
            out.distance = lerp(before.distance, after.distance, w);
            out.relative_distance = before.relative_distance.zip(after.relative_distance).map(|(a, b)| lerp(a, b, w));
            out.gear = before.gear;
            out.brake = before.brake;
            out.drs = before.drs;
            out.lap = out.lap.or(before.lap);
            out.date_ms = out.date_ms.or(before.date_ms);
        }
        merged.push(out);
    }
    // Stable: car samples (pushed first) stay ahead of position samples at the same time.
    merged.sort_by_key(|r| r.session_time_ms);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture with every channel a car or position file may lack left empty.
    fn blank(time: u64) -> TelemetryRecord {
        TelemetryRecord {
            lap: None,
            rpm: 0.0,
            speed: 0.0,
            gear: 0,
            throttle: 0.0,
            drs: 0,
            x: 0.0,
            y: 0.0,
            z: 0.0,
            distance: 0.0,
            relative_distance: None,
            status: None,
            source: None,
            ..TelemetryRecord::example("VER", time)
        }
    }

    fn car(time: u64, speed: f64, gear: u8, throttle: f64) -> TelemetryRecord {
        TelemetryRecord { speed, rpm: speed * 40.0, gear, throttle, source: Some("car".into()), ..blank(time) }
    }

    fn pos(time: u64, x: f64) -> TelemetryRecord {
        TelemetryRecord { x, y: -x, z: 1.0, status: Some("OnTrack".into()), source: Some("pos".into()), ..blank(time) }
    }

    #[test]
    fn interpolates_continuous_channels_and_fills_discrete_ones() {
        let cars = vec![car(1_000, 100.0, 3, 50.0), car(1_400, 200.0, 5, 104.0), car(1_800, 300.0, 7, 100.0)];
        let positions = vec![pos(900, 0.0), pos(1_200, 30.0), pos(1_600, 70.0), pos(2_000, 110.0)];
        let merged = merge_car_and_pos(cars, positions);
        let times: Vec<u64> = merged.iter().map(|r| r.session_time_ms).collect();
        assert_eq!(times, [900, 1_000, 1_200, 1_400, 1_600, 1_800, 2_000]);
        // A position sample between two car samples: speed halfway, gear and throttle filled
        // forward (the later throttle is the 104 sentinel, so no interpolation).
        let p = &merged[2];
        assert_eq!((p.speed, p.gear, p.throttle, p.source.as_deref()), (150.0, 3, 50.0, Some("pos")));
        let p = &merged[4];
        assert_eq!((p.speed, p.gear, p.throttle), (250.0, 5, 104.0));
        // A car sample gets X/Y/Z from the position samples around it.
        let c = &merged[1];
        assert_eq!((c.x, c.y, c.z, c.status.as_deref(), c.source.as_deref()), (10.0, -10.0, 1.0, Some("OnTrack"), Some("car")));
        // Past either end: the nearest sample's values (backward fill at the start).
        assert_eq!((merged[0].speed, merged[0].gear), (100.0, 3));
        assert_eq!((merged[6].speed, merged[6].gear, merged[5].x), (300.0, 7, 90.0));
    }

    #[test]
    fn a_position_file_alone_is_an_error_naming_the_missing_channels() {
        let file = TelemetryFile { path: "VER_pos.csv".into(), channels: Channels::Pos, records: vec![pos(0, 1.0)] };
        let err = merge_files(vec![file]).unwrap_err().to_string();
        assert!(err.contains("VER_pos.csv") && err.contains("RPM, Speed, nGear, Throttle, Brake") && err.contains("VER"), "{err}");
    }
}
