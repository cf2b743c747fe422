//! A generated race: every driver's FastF1-schema telemetry on the reference track, with
//! anomalies injected at known times (the ground truth tests and demos check alerts against).
//!
//! Car data (~3.7 Hz) and position data (~4.5 Hz) are sampled separately and merged, as FastF1's
//! `get_telemetry()` does, giving ~8 rows per second with every channel filled in. RPM is
//! consistent with speed and gear; gears follow fixed speed bands; DRS opens in its zones.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::anomalies::PLAUSIBLE_SPEED_KMH;
use crate::records::{AnomalyKind, EventTime, TelemetryRecord};
use crate::sim::track::{LapProfile, Track};

/// The 2023 grid, in car-number order of the constructors' table; more drivers get `D21`, ...
pub const DRIVER_CODES: [&str; 20] =
    ["VER", "PER", "HAM", "RUS", "LEC", "SAI", "NOR", "PIA", "ALO", "STR", "OCO", "GAS", "ALB", "SAR", "TSU", "RIC", "BOT", "ZHO", "MAG", "HUL"];

/// SessionTime of the race start (FastF1 sessions start their clock well before lights out).
pub const RACE_START_MS: EventTime = 3_600_000;
/// `Date` of SessionTime zero: 2023-03-05 14:00:00 UTC.
pub const SESSION_EPOCH_MS: i64 = 1_678_024_800_000;
/// Upper speed (km/h) of each gear's band in the generated gearbox; RPM hits 11,800 at the top.
const GEAR_TOP_KMH: [f64; 8] = [95.0, 130.0, 160.0, 190.0, 225.0, 260.0, 295.0, 340.0];
const SHIFT_RPM: f64 = 11_800.0;
const IDLE_RPM: f64 = 4_000.0;
const CAR_PERIOD_MS: f64 = 270.0;
const POS_PERIOD_MS: f64 = 220.0;

/// What to generate.
#[derive(Clone, Debug)]
pub struct RaceConfig {
    pub drivers: usize,
    pub laps: u32,
    pub seed: u64,
    /// Inject one anomaly per driver per lap (kinds rotate).
    pub inject_anomalies: bool,
}

impl Default for RaceConfig {
    fn default() -> Self {
        RaceConfig { drivers: 20, laps: 2, seed: 42, inject_anomalies: true }
    }
}

/// One injected anomaly: alerts of `kind` for `driver` between `start_ms` and `end_ms` are expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedAnomaly {
    pub driver: String,
    pub kind: AnomalyKind,
    pub lap: u32,
    pub start_ms: EventTime,
    pub end_ms: EventTime,
}

/// How far (ms) before the start or after the end of an injected anomaly an alert still matches it.
pub const MATCH_TOLERANCE_MS: EventTime = 1_000;

impl InjectedAnomaly {
    pub fn matches(&self, driver: &str, kind: AnomalyKind, time_ms: EventTime) -> bool {
        self.driver == driver && self.kind == kind && time_ms + MATCH_TOLERANCE_MS >= self.start_ms && time_ms <= self.end_ms + MATCH_TOLERANCE_MS
    }
}

/// The generated race.
#[derive(Clone, Debug)]
pub struct Race {
    /// Per driver, rows in SessionTime order.
    pub drivers: Vec<(String, Vec<TelemetryRecord>)>,
    pub ground_truth: Vec<InjectedAnomaly>,
}

impl Race {
    pub fn generate(config: &RaceConfig) -> Race {
        let track = Track::reference();
        let mut drivers = Vec::new();
        let mut ground_truth = Vec::new();
        for index in 0..config.drivers {
            let code = DRIVER_CODES.get(index).map(|c| c.to_string()).unwrap_or_else(|| format!("D{}", index + 1));
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
            let pace = 1.0 - 0.0035 * index as f64 - rng.random_range(0.0..0.002);
            let lap = LapProfile::new(&track, pace);
            let start = RACE_START_MS + 180 * index as u64;
            let mut rows = sample_driver(&code, &track, &lap, start, config.laps, &mut rng);
            if config.inject_anomalies {
                for lap_number in 1..=config.laps {
                    let kind = AnomalyKind::ALL[(index + lap_number as usize) % AnomalyKind::ALL.len()];
                    if let Some(injected) = inject(kind, lap_number, &mut rows, &mut rng) {
                        ground_truth.push(injected);
                    }
                }
            }
            drivers.push((code, rows));
        }
        Race { drivers, ground_truth }
    }

    pub fn record_count(&self) -> usize {
        self.drivers.iter().map(|(_, rows)| rows.len()).sum()
    }

    /// All rows of all drivers in (SessionTime, driver) order.
    pub fn all_records(&self) -> Vec<TelemetryRecord> {
        let mut all: Vec<TelemetryRecord> = self.drivers.iter().flat_map(|(_, rows)| rows.iter().cloned()).collect();
        all.sort_by(|a, b| (a.session_time_ms, &a.driver).cmp(&(b.session_time_ms, &b.driver)));
        all
    }
}

/// Gear the generated gearbox uses at `kmh`.
pub fn gear_for(kmh: f64) -> u8 {
    GEAR_TOP_KMH.iter().position(|top| kmh < *top).unwrap_or(GEAR_TOP_KMH.len() - 1) as u8 + 1
}

/// Engine RPM at `kmh` in `gear` (gear ratios put 11,800 RPM at the top of each band).
pub fn rpm_for(kmh: f64, gear: u8) -> f64 {
    (kmh * SHIFT_RPM / GEAR_TOP_KMH[gear as usize - 1]).max(IDLE_RPM)
}

fn sample_times(start: EventTime, end: EventTime, rng: &mut ChaCha8Rng) -> Vec<(EventTime, &'static str)> {
    let mut times = Vec::new();
    for (period, offset, source) in [(CAR_PERIOD_MS, 0.0, "car"), (POS_PERIOD_MS, 110.0, "pos")] {
        let mut t = start as f64 + offset;
        while t < end as f64 {
            times.push((t.round() as EventTime, source));
            t += period + rng.random_range(-0.08..0.08) * period;
        }
    }
    times.sort();
    times.dedup_by_key(|(t, _)| *t);
    times
}

fn sample_driver(driver: &str, track: &Track, lap: &LapProfile, start: EventTime, laps: u32, rng: &mut ChaCha8Rng) -> Vec<TelemetryRecord> {
    let lap_ms = lap.lap_time * 1_000.0;
    let end = start + (lap_ms * f64::from(laps)) as EventTime;
    sample_times(start, end, rng)
        .into_iter()
        .map(|(time, source)| {
            let since_start = (time - start) as f64;
            let lap_index = ((since_start / lap_ms) as u32).min(laps - 1);
            let in_lap = (since_start - f64::from(lap_index) * lap_ms) / 1_000.0;
            let i = lap.index_at(in_lap);
            let point = track.points[i];
            let true_kmh = lap.speed[i] * 3.6;
            let gear = gear_for(true_kmh);
            let distance = i as f64;
            let braking = lap.braking[i];
            let drs = if track.in_drs_zone(distance) && !braking {
                12
            } else if track.in_drs_zone(distance + 100.0) {
                8
            } else {
                1
            };
            TelemetryRecord {
                driver: driver.into(),
                lap: Some(lap_index + 1),
                session_time_ms: time,
                date_ms: Some(SESSION_EPOCH_MS + time as i64),
                rpm: (rpm_for(true_kmh, gear) * (1.0 + rng.random_range(-0.003..0.003))).round(),
                speed: (true_kmh + rng.random_range(-0.3..0.3)).max(0.0).round(),
                gear,
                throttle: lap.throttle[i].round(),
                brake: braking,
                drs,
                x: (point.x * 10.0).round(),
                y: (point.y * 10.0).round(),
                z: (point.z * 10.0).round(),
                distance,
                relative_distance: Some(distance / track.length()),
                status: Some("OnTrack".into()),
                source: Some(source.into()),
                produced_at_ms: None,
            }
        })
        .collect()
}

/// Rows `[from, to)` of lap `lap`, by index.
fn lap_rows(rows: &[TelemetryRecord], lap: u32) -> (usize, usize) {
    let from = rows.iter().position(|r| r.lap == Some(lap)).unwrap_or(rows.len());
    let to = rows.iter().rposition(|r| r.lap == Some(lap)).map_or(from, |i| i + 1);
    (from, to)
}

/// Rows whose lead-in is too short for rules that need a baseline are never used as sites.
const LEAD_IN_ROWS: usize = 40;

fn inject(kind: AnomalyKind, lap: u32, rows: &mut [TelemetryRecord], rng: &mut ChaCha8Rng) -> Option<InjectedAnomaly> {
    let (from, to) = lap_rows(rows, lap);
    let from = from.max(LEAD_IN_ROWS);
    let span = |rng: &mut ChaCha8Rng, lo: usize, hi: usize| rng.random_range(lo..=hi);
    let len = match kind {
        AnomalyKind::WheelSpin => span(rng, 7, 9),
        AnomalyKind::GearAnomaly => span(rng, 8, 12),
        AnomalyKind::OverRev => 1,
        AnomalyKind::BrakeThrottleOverlap => span(rng, 5, 8),
        AnomalyKind::SuddenSpeedDrop => 30,
    };
    let candidates: Vec<usize> = (from..to.saturating_sub(len + 2)).filter(|&j| site_fits(kind, rows, j, len)).collect();
    if candidates.is_empty() {
        return None;
    }
    let j = candidates[rng.random_range(0..candidates.len())];
    let (start, end) = apply(kind, rows, j, len, rng);
    Some(InjectedAnomaly { driver: rows[j].driver.to_string(), kind, lap, start_ms: start, end_ms: end })
}

fn site_fits(kind: AnomalyKind, rows: &[TelemetryRecord], j: usize, len: usize) -> bool {
    let window = &rows[j..j + len];
    match kind {
        AnomalyKind::WheelSpin => {
            let gear = rows[j].gear;
            rows[j - 3..j + len]
                .iter()
                .all(|r| r.gear == gear && (60.0..=95.0).contains(&r.throttle) && !r.brake && r.speed >= 60.0 && r.rpm * 1.2 <= 12_100.0)
        }
        AnomalyKind::GearAnomaly => window.iter().all(|r| r.speed >= 175.0) || window.iter().all(|r| r.speed <= 150.0 && r.speed >= 40.0),
        AnomalyKind::OverRev => {
            // An upshift from gear 4-6 under full throttle, with room to hold the gear 25 km/h longer.
            let (a, b) = (&rows[j - 1], &rows[j]);
            (4..=6).contains(&a.gear)
                && b.gear == a.gear + 1
                && a.throttle >= 100.0
                && rows[j..].iter().take(12).all(|r| !r.brake && r.throttle >= 100.0)
        }
        AnomalyKind::BrakeThrottleOverlap => rows[j - 1..j + len + 1].iter().all(|r| r.brake),
        AnomalyKind::SuddenSpeedDrop => {
            let r = &rows[j];
            r.gear >= 7
                && r.speed >= 270.0
                && rows[j..j + len].iter().all(|r| !r.brake && r.throttle >= 100.0)
                && rows[j - 10..j].iter().all(|r| !r.brake)
        }
    }
}

/// Modifies the rows of one injected anomaly; returns its (start, end) SessionTime.
fn apply(kind: AnomalyKind, rows: &mut [TelemetryRecord], j: usize, len: usize, rng: &mut ChaCha8Rng) -> (EventTime, EventTime) {
    match kind {
        AnomalyKind::WheelSpin => {
            let peak = rng.random_range(0.15..0.19);
            for k in 0..len {
                let ramp = ((k + 1).min(len - k) as f64 / 3.0).min(1.0);
                rows[j + k].rpm = (rows[j + k].rpm * (1.0 + peak * ramp)).round();
            }
            (rows[j].session_time_ms, rows[j + len - 1].session_time_ms)
        }
        AnomalyKind::GearAnomaly => {
            let wrong = if rows[j].speed >= 175.0 { 1 } else { 8 };
            for r in &mut rows[j..j + len] {
                r.gear = wrong;
            }
            (rows[j].session_time_ms, rows[j + len - 1].session_time_ms)
        }
        AnomalyKind::OverRev => {
            let gear = rows[j - 1].gear;
            let hold_until = GEAR_TOP_KMH[gear as usize - 1] + 25.0;
            let mut over = Vec::new();
            for (k, r) in rows[j..].iter_mut().enumerate() {
                if r.speed > hold_until || k > 20 {
                    break;
                }
                r.gear = gear;
                r.rpm = rpm_for(r.speed, gear).round();
                if r.rpm >= 12_500.0 {
                    over.push(r.session_time_ms);
                }
            }
            match (over.first(), over.last()) {
                (Some(a), Some(b)) => (*a, *b),
                _ => (rows[j].session_time_ms, rows[j].session_time_ms),
            }
        }
        AnomalyKind::BrakeThrottleOverlap => {
            for r in &mut rows[j..j + len] {
                r.throttle = rng.random_range(35.0_f64..60.0).round();
            }
            (rows[j].session_time_ms, rows[j + len - 1].session_time_ms)
        }
        AnomalyKind::SuddenSpeedDrop => {
            let (t0, v0, gear) = (rows[j].session_time_ms, rows[j].speed, rows[j].gear);
            let floor = PLAUSIBLE_SPEED_KMH[gear as usize].0 + 20.0;
            let depth = (v0 - floor).min(rng.random_range(75.0..90.0));
            const DROP_MS: f64 = 600.0;
            const RECOVER_KMH_PER_S: f64 = 30.0;
            let mut end = t0;
            for r in &mut rows[j..] {
                let dt = (r.session_time_ms - t0) as f64;
                let slowed = if dt <= DROP_MS { v0 - depth * dt / DROP_MS } else { v0 - depth + RECOVER_KMH_PER_S * (dt - DROP_MS) / 1_000.0 };
                if (dt > DROP_MS && slowed >= r.speed) || r.brake || dt > 6_000.0 {
                    break;
                }
                r.speed = slowed.round();
                // The car loses speed in its gear, then the driver shifts normally while recovering.
                r.gear = if dt <= DROP_MS { gear } else { gear_for(r.speed) };
                r.rpm = rpm_for(r.speed, r.gear).round();
                r.throttle = if dt <= DROP_MS { 0.0 } else { 100.0 };
                r.drs = r.drs.min(8);
                if dt <= DROP_MS {
                    end = r.session_time_ms;
                }
            }
            (t0, end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomalies::{detect_in_order, gear_plausible, AnomalyConfig};

    #[test]
    fn generated_rows_are_plausible_and_ordered() {
        let race = Race::generate(&RaceConfig { drivers: 3, laps: 1, seed: 1, inject_anomalies: false });
        for (_, rows) in &race.drivers {
            assert!(rows.windows(2).all(|w| w[0].session_time_ms < w[1].session_time_ms));
            let seconds = (rows.last().unwrap().session_time_ms - rows[0].session_time_ms) as f64 / 1_000.0;
            let rate = rows.len() as f64 / seconds;
            assert!((7.0..10.0).contains(&rate), "{rate} rows/s");
            assert!(rows.iter().all(|r| gear_plausible(r.gear, r.speed) && r.rpm < 12_000.0));
        }
    }

    #[test]
    fn clean_race_raises_no_alerts_and_every_injection_is_found_once() {
        let config = AnomalyConfig::default();
        let clean = Race::generate(&RaceConfig { drivers: 20, laps: 2, seed: 3, inject_anomalies: false });
        for (driver, rows) in &clean.drivers {
            let alerts = detect_in_order(&config, rows);
            assert!(alerts.is_empty(), "{driver}: false alerts {alerts:#?}");
        }
        for (seed, laps) in [(3, 2), (42, 2), (3, 25)] {
            let race = Race::generate(&RaceConfig { drivers: 20, laps, seed, inject_anomalies: true });
            assert_eq!(race.ground_truth.len(), 20 * laps as usize, "one anomaly per driver per lap");
            let mut unmatched = Vec::new();
            let mut hits = vec![0; race.ground_truth.len()];
            for (driver, rows) in &race.drivers {
                for alert in detect_in_order(&config, rows) {
                    match race.ground_truth.iter().position(|g| g.matches(driver, alert.kind, alert.session_time_ms)) {
                        Some(i) => hits[i] += 1,
                        None => unmatched.push(alert),
                    }
                }
            }
            let missed: Vec<_> = race.ground_truth.iter().zip(&hits).filter(|(_, h)| **h == 0).map(|(g, _)| g).collect();
            assert!(missed.is_empty(), "seed {seed} missed {missed:#?}");
            assert!(hits.iter().all(|h| *h == 1), "seed {seed}: some anomaly alerted twice: {hits:?}");
            assert!(unmatched.is_empty(), "seed {seed} unmatched alerts {unmatched:#?}");
        }
    }
}
