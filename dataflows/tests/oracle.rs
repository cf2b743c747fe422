//! Oracle tests: the telemetry dataflow at 1 and 4 workers against a brute-force recomputation
//! on the same generated race. Each worker feeds its share in event-time order, advancing its
//! input as it goes, like the Kafka source does with its watermark. The share is either every
//! `peers`-th record (a driver's records enter at every worker: windows must still be exact) or
//! whole drivers by partition, as Kafka keyed by driver delivers them.

use std::collections::BTreeMap;

use pitwall_dataflows::anomalies::{detect_in_order, AnomalyConfig};
use pitwall_dataflows::keyed::KeyedOptions;
use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::records::{Alert, ChannelStats, Sample, SourcePosition, TelemetryRecord, WindowKind, WindowResult};
use pitwall_dataflows::sim::{Race, RaceConfig};
use pitwall_dataflows::windows::SlidingWindows;
use timely::dataflow::operators::capture::Event;
use timely::dataflow::operators::{Capture, Input, Probe};

fn race() -> Race {
    Race::generate(&RaceConfig { drivers: 6, laps: 2, seed: 11, inject_anomalies: true })
}

/// How records are split over the input workers.
#[derive(Clone, Copy)]
enum Feed {
    RoundRobin,
    /// A driver's records all enter at one worker, like one Kafka partition per driver.
    ByDriverPartition,
}

/// Runs the dataflow on `workers` threads; returns every window result and alert.
fn run_dataflow(workers: usize, config: TelemetryConfig, feed: Feed) -> (Vec<WindowResult>, Vec<Alert>) {
    let (windows, alerts) = run_timed(workers, config, feed);
    (windows.into_iter().map(|(_, w)| w).collect(), alerts.into_iter().map(|(_, a)| a).collect())
}

/// Every window result and alert with the timely time it was emitted at.
type Timed = (Vec<(u64, WindowResult)>, Vec<(u64, Alert)>);

/// Runs the dataflow on `workers` threads; returns every window result and alert with the
/// timely time it was emitted at.
fn run_timed(workers: usize, config: TelemetryConfig, feed: Feed) -> Timed {
    let records = race().all_records();
    let (windows_tx, windows_rx) = std::sync::mpsc::channel();
    let (alerts_tx, alerts_rx) = std::sync::mpsc::channel();
    let windows_tx = std::sync::Mutex::new(windows_tx);
    let alerts_tx = std::sync::Mutex::new(alerts_tx);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, samples) = scope.new_input::<Vec<Sample>>();
            let outputs = telemetry_dataflow(samples, &config);
            let (probe, windows) = outputs.windows.probe();
            windows_tx.lock().unwrap().send(windows.capture()).unwrap();
            alerts_tx.lock().unwrap().send(outputs.alerts.probe_with(&probe).capture()).unwrap();
            (input, probe)
        });
        let mine = |i: usize, record: &TelemetryRecord| match feed {
            Feed::RoundRobin => i % peers == index,
            Feed::ByDriverPartition => key_partition(record.driver.as_bytes(), 8) as usize % peers == index,
        };
        for (offset, record) in records.iter().enumerate().filter(|(i, r)| mine(*i, r)) {
            if record.session_time_ms > *input.time() {
                input.advance_to(record.session_time_ms);
                worker.step();
            }
            input.send(Sample { at: SourcePosition { partition: 0, offset: offset as i64 }, record: record.clone() });
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    (drain(windows_rx), drain(alerts_rx))
}

/// Every record the captured streams carried, with its time (the workers have finished).
fn drain<T>(captures: std::sync::mpsc::Receiver<std::sync::mpsc::Receiver<Event<u64, Vec<T>>>>) -> Vec<(u64, T)> {
    let events = captures.try_iter().flat_map(|rx| rx.try_iter().collect::<Vec<_>>());
    events
        .flat_map(|event| match event {
            Event::Messages(stamp, data) => {
                let time = *stamp.expect_singleton();
                data.into_iter().map(|d| (time, d)).collect()
            }
            Event::Progress(_) => Vec::new(),
        })
        .collect()
}

fn stats(values: &[f64]) -> ChannelStats {
    ChannelStats {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        min: values.iter().cloned().fold(f64::INFINITY, f64::min),
        max: values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// The definition of a window's aggregate, written out directly.
fn brute_force(driver: &str, window: WindowKind, start_ms: u64, end_ms: u64, samples: &[&TelemetryRecord]) -> WindowResult {
    let channel = |f: fn(&TelemetryRecord) -> f64| stats(&samples.iter().map(|r| f(r)).collect::<Vec<_>>());
    let pairs = samples.windows(2);
    WindowResult {
        driver: driver.to_string(),
        window,
        start_ms,
        end_ms,
        count: samples.len() as u64,
        speed: channel(|r| r.speed),
        rpm: channel(|r| r.rpm),
        throttle: channel(|r| r.throttle),
        brake_pct: 100.0 * samples.iter().filter(|r| r.brake).count() as f64 / samples.len() as f64,
        gear_changes: samples.windows(2).filter(|p| p[0].gear != p[1].gear).count() as u64,
        drs_open_ms: pairs.filter(|p| p[0].drs >= 10).map(|p| p[1].session_time_ms - p[0].session_time_ms).sum(),
    }
}

fn expected_windows(sliding: SlidingWindows) -> Vec<WindowResult> {
    let race = race();
    let mut expected = Vec::new();
    for (driver, rows) in &race.drivers {
        let last = rows.last().unwrap().session_time_ms;
        let mut start = 0;
        while start <= last {
            let end = start + sliding.length_ms;
            let inside: Vec<&TelemetryRecord> = rows.iter().filter(|r| r.session_time_ms >= start && r.session_time_ms < end).collect();
            if !inside.is_empty() {
                expected.push(brute_force(driver, WindowKind::Sliding, start, end, &inside));
            }
            start += sliding.slide_ms;
        }
        let mut groups: BTreeMap<WindowKind, Vec<&TelemetryRecord>> = BTreeMap::new();
        for r in rows {
            let lap = r.lap.unwrap();
            let sector = ((r.relative_distance.unwrap() * 3.0) as u8).min(2) + 1;
            groups.entry(WindowKind::Lap { lap }).or_default().push(r);
            groups.entry(WindowKind::Sector { lap, sector }).or_default().push(r);
        }
        for (window, inside) in groups {
            let (first, last) = (inside[0].session_time_ms, inside.last().unwrap().session_time_ms);
            expected.push(brute_force(driver, window, first, last, &inside));
        }
    }
    expected
}

fn key(w: &WindowResult) -> (String, WindowKind, u64) {
    (w.driver.clone(), w.window.clone(), w.start_ms)
}

fn assert_windows_equal(mut got: Vec<WindowResult>, mut expected: Vec<WindowResult>) {
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got.len(), expected.len(), "number of windows");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(key(g), key(e));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        let channels = [(g.speed, e.speed), (g.rpm, e.rpm), (g.throttle, e.throttle)];
        assert!(channels.iter().all(|(a, b)| close(a.mean, b.mean) && a.min == b.min && a.max == b.max), "{g:?} != {e:?}");
        assert!(close(g.brake_pct, e.brake_pct), "{g:?} != {e:?}");
        assert_eq!((g.end_ms, g.count, g.gear_changes, g.drs_open_ms), (e.end_ms, e.count, e.gear_changes, e.drs_open_ms), "{g:?}");
    }
}

#[test]
fn windows_match_brute_force_at_one_and_four_workers() {
    for sliding in [SlidingWindows::default(), SlidingWindows::new(2_500, 1_000)] {
        let config = TelemetryConfig { sliding, ..Default::default() };
        for (workers, feed) in [(1, Feed::RoundRobin), (4, Feed::RoundRobin), (4, Feed::ByDriverPartition)] {
            let (windows, _) = run_dataflow(workers, config.clone(), feed);
            assert_windows_equal(windows, expected_windows(sliding));
        }
    }
}

#[test]
fn alerts_match_sequential_rules_at_one_and_four_workers() {
    let race = race();
    let mut expected: Vec<String> =
        race.drivers.iter().flat_map(|(_, rows)| detect_in_order(&AnomalyConfig::default(), rows)).map(|a| a.id).collect();
    expected.sort();
    assert!(expected.len() >= race.ground_truth.len(), "the race has alerts to find");
    // Rules see each driver in its partition's order, as it arrives.
    for workers in [1, 4] {
        let (_, alerts) = run_dataflow(workers, TelemetryConfig::default(), Feed::ByDriverPartition);
        let mut got: Vec<String> = alerts.into_iter().map(|a| a.id).collect();
        got.sort();
        assert_eq!(got, expected, "at {workers} workers");
    }
    // Waiting for the watermark, they are exact whatever the split.
    let config = TelemetryConfig { alerts_after_watermark: true, ..Default::default() };
    let (_, alerts) = run_dataflow(4, config, Feed::RoundRobin);
    let mut got: Vec<String> = alerts.into_iter().map(|a| a.id).collect();
    got.sort();
    assert_eq!(got, expected, "after the watermark, round-robin input");
}

/// Outputs are timestamped at their first sample's time rounded down to the granularity, the
/// same at any worker count and split (a restart compares these times with committed marks), and
/// a granule's outputs share one timestamp.
#[test]
fn output_times_are_coarse_first_sample_times_whatever_the_split() {
    let exact = KeyedOptions { time_granularity_ms: 1, ..Default::default() };
    let (windows, alerts) = run_timed(1, TelemetryConfig { keyed: exact, ..Default::default() }, Feed::ByDriverPartition);
    // At 1 ms a window's time is its first sample's, at or after the window's start.
    let sliding = SlidingWindows::default();
    let records = race().all_records();
    let first_sample = |w: &WindowResult| {
        records.iter().filter(|r| r.driver == w.driver && (w.start_ms..w.end_ms).contains(&r.session_time_ms)).map(|r| r.session_time_ms).min()
    };
    for (time, w) in windows.iter().filter(|(_, w)| w.window == WindowKind::Sliding).take(50) {
        assert_eq!(Some(*time), first_sample(w), "{w:?}");
    }
    let exact_times: BTreeMap<_, u64> = windows.iter().map(|(t, w)| (key(w), *t)).collect();
    let exact_alerts: BTreeMap<String, u64> = alerts.iter().map(|(t, a)| (a.id.clone(), *t)).collect();
    assert!(exact_times.len() > 100 && !exact_alerts.is_empty());
    for granularity in [250, 1_000, 5_000] {
        let config =
            TelemetryConfig { keyed: KeyedOptions { time_granularity_ms: granularity, ..Default::default() }, sliding, ..Default::default() };
        for (workers, feed) in [(1, Feed::ByDriverPartition), (4, Feed::ByDriverPartition), (4, Feed::RoundRobin)] {
            let (windows, alerts) = run_timed(workers, config.clone(), feed);
            let times: BTreeMap<_, u64> = windows.iter().map(|(t, w)| (key(w), *t)).collect();
            let expected: BTreeMap<_, u64> = exact_times.iter().map(|(k, t)| (k.clone(), t - t % granularity)).collect();
            assert_eq!(times, expected, "window times at {granularity} ms, {workers} workers");
            if matches!(feed, Feed::ByDriverPartition) {
                let got: BTreeMap<String, u64> = alerts.iter().map(|(t, a)| (a.id.clone(), *t)).collect();
                let expected: BTreeMap<String, u64> = exact_alerts.iter().map(|(id, t)| (id.clone(), t - t % granularity)).collect();
                assert_eq!(got, expected, "alert times at {granularity} ms, {workers} workers");
            }
            let distinct = |m: &BTreeMap<_, u64>| m.values().collect::<std::collections::BTreeSet<_>>().len();
            assert!(distinct(&times) * 2 < distinct(&exact_times), "coarse times are shared: {} vs {}", distinct(&times), distinct(&exact_times));
        }
    }
}
