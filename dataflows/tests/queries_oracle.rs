//! Incremental queries against a brute-force recomputation, at 1 and 4 workers: a generated race
//! runs through the telemetry dataflow, a top-3 query and a threshold query are registered at the
//! start, and the streamed +/- updates of each, replayed up to every window boundary, equal the
//! query recomputed from scratch over the windows closed by then. A query removed mid-race has
//! all its rows retracted.

use std::collections::{BTreeMap, BTreeSet};

use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::queries::{live_queries, window_values, Query, Row};
use pitwall_dataflows::records::{Alert, EventTime, Sample, SourcePosition, WindowKind, WindowResult};
use pitwall_dataflows::sim::{Race, RaceConfig};
use timely::dataflow::operators::capture::Event;
use timely::dataflow::operators::{Capture, Input, Probe};

type Update = ((u64, Row), EventTime, isize);

const TOP: Query = Query::TopK { metric: 0, k: 3 };
/// Drivers whose window top speed is above 300 km/h.
const ABOVE: Query = Query::Above { metric: 1, threshold_milli: 300_000 };
/// Alerts per kind/severity over the last 20 s of event time.
const COUNTS: Query = Query::AlertCounts { seconds: 20 };
/// A top-5 removed halfway through the race.
const REMOVED: Query = Query::TopK { metric: 2, k: 5 };

/// What one run gives: the windows, the query updates, the removal time, the alerts with their times.
type Run = (Vec<WindowResult>, Vec<Update>, EventTime, Vec<(EventTime, Alert)>);

fn run(workers: usize) -> Run {
    let race = Race::generate(&RaceConfig { drivers: 6, laps: 2, seed: 5, inject_anomalies: true });
    let records = race.all_records();
    let removal_time = records[records.len() / 2].session_time_ms;
    let (windows_tx, windows_rx) = std::sync::mpsc::channel();
    let (results_tx, results_rx) = std::sync::mpsc::channel();
    let (alerts_tx, alerts_rx) = std::sync::mpsc::channel();
    let (windows_tx, results_tx, alerts_tx) =
        (std::sync::Mutex::new(windows_tx), std::sync::Mutex::new(results_tx), std::sync::Mutex::new(alerts_tx));
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, mut queries, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, samples) = scope.new_input::<Vec<Sample>>();
            let outputs = telemetry_dataflow(samples, &TelemetryConfig::default());
            let live = live_queries(outputs.windows.clone(), outputs.alerts.clone());
            let (probe, results) = live.results.inner.probe();
            results_tx.lock().unwrap().send(results.capture()).unwrap();
            windows_tx.lock().unwrap().send(outputs.windows.probe_with(&probe).capture()).unwrap();
            alerts_tx.lock().unwrap().send(outputs.alerts.probe_with(&probe).capture()).unwrap();
            (input, live.input, probe)
        });
        if index == 0 {
            for (id, query) in [(1, TOP), (2, ABOVE), (3, REMOVED), (4, COUNTS)] {
                queries.insert((id, query));
            }
        }
        let mut removed = false;
        for (offset, record) in records.iter().enumerate().filter(|(_, r)| key_partition(r.driver.as_bytes(), 8) as usize % peers == index) {
            if record.session_time_ms > *input.time() {
                input.advance_to(record.session_time_ms);
                queries.advance_to(record.session_time_ms);
                queries.flush();
                worker.step();
            }
            if index == 0 && !removed && record.session_time_ms >= removal_time {
                queries.remove((3, REMOVED));
                removed = true;
            }
            input.send(Sample { at: SourcePosition { partition: 0, offset: offset as i64 }, record: record.clone() });
        }
        drop(input);
        drop(queries);
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let windows: Vec<WindowResult> = drain(windows_rx);
    let results: Vec<Update> = drain(results_rx);
    // Alerts with the event time they were raised at (their message time).
    let alerts: Vec<(EventTime, Alert)> = alerts_rx
        .try_iter()
        .flat_map(|r| r.try_iter().collect::<Vec<_>>())
        .flat_map(|e| match e {
            Event::Messages(stamp, d) => {
                let t = stamp.least().copied().unwrap_or_default();
                d.into_iter().map(|a: Alert| (t.max(a.session_time_ms), a)).collect()
            }
            Event::Progress(_) => Vec::new(),
        })
        .collect();
    (windows, results, removal_time, alerts)
}

/// Every record the captured streams carried (the workers have finished).
fn drain<D>(rx: std::sync::mpsc::Receiver<std::sync::mpsc::Receiver<Event<u64, Vec<D>>>>) -> Vec<D> {
    rx.try_iter()
        .flat_map(|r| r.try_iter().collect::<Vec<_>>())
        .flat_map(|e| match e {
            Event::Messages(_, d) => d,
            Event::Progress(_) => Vec::new(),
        })
        .collect()
}

/// The result rows of `query` over the windows closed by `t`, recomputed from scratch.
fn brute_force(windows: &[WindowResult], query: &Query, t: EventTime) -> BTreeSet<Row> {
    let mut newest: BTreeMap<&str, &WindowResult> = BTreeMap::new();
    for w in windows.iter().filter(|w| w.window == WindowKind::Sliding && w.end_ms <= t) {
        if newest.get(w.driver.as_str()).is_none_or(|n| n.end_ms < w.end_ms) {
            newest.insert(&w.driver, w);
        }
    }
    let values = |metric: u8| newest.iter().map(move |(d, w)| (d.to_string(), window_values(w)[metric as usize]));
    match query {
        Query::TopK { metric, k } => {
            let mut all: Vec<Row> = values(*metric).collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.into_iter().take(*k as usize).collect()
        }
        Query::Above { metric, threshold_milli } => values(*metric).filter(|(_, v)| v > threshold_milli).collect(),
        Query::AlertCounts { .. } => unreachable!("alert counts are checked by alert_counts"),
    }
}

/// Alerts per `kind/severity` raised in `(t - seconds, t]`, counts in thousandths.
fn alert_counts(alerts: &[(EventTime, Alert)], seconds: u32, t: EventTime) -> BTreeSet<Row> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (_, a) in alerts.iter().filter(|(raised, _)| *raised <= t && raised + u64::from(seconds) * 1_000 > t) {
        *counts.entry(format!("{}/{}", a.kind.name(), a.severity.name())).or_default() += 1_000;
    }
    counts.into_iter().collect()
}

/// The rows of query `id` after replaying every update at or before `t`.
fn replayed(updates: &[Update], id: u64, t: EventTime) -> BTreeSet<Row> {
    let mut counts: BTreeMap<Row, isize> = BTreeMap::new();
    for ((q, row), time, diff) in updates.iter().filter(|((q, _), time, _)| *q == id && *time <= t) {
        let _ = (q, time);
        *counts.entry(row.clone()).or_default() += diff;
    }
    assert!(counts.values().all(|c| *c == 0 || *c == 1), "a row counted twice: {counts:?}");
    counts.into_iter().filter(|(_, c)| *c == 1).map(|(r, _)| r).collect()
}

#[test]
fn streamed_updates_replay_to_the_brute_force_result_at_every_window_boundary() {
    for workers in [1, 4] {
        let (windows, updates, removal_time, alerts) = run(workers);
        assert!(alerts.len() >= 4, "{} alerts", alerts.len());
        let boundaries: BTreeSet<EventTime> = windows.iter().filter(|w| w.window == WindowKind::Sliding).map(|w| w.end_ms).collect();
        assert!(boundaries.len() > 100, "{} boundaries", boundaries.len());
        let mut checked = 0;
        for &t in &boundaries {
            for (id, query) in [(1, TOP), (2, ABOVE)] {
                assert_eq!(replayed(&updates, id, t), brute_force(&windows, &query, t), "{workers} workers, query {id} at {t}");
                checked += 1;
            }
            assert_eq!(replayed(&updates, 4, t), alert_counts(&alerts, 20, t), "{workers} workers, alert counts at {t}");
            checked += 1;
        }
        let top = brute_force(&windows, &TOP, *boundaries.last().unwrap());
        assert_eq!(top.len(), 3, "{top:?}");
        assert!(!brute_force(&windows, &ABOVE, *boundaries.last().unwrap()).is_empty() || updates.iter().any(|((q, _), _, _)| *q == 2));
        // The removed query had rows, and none after its removal.
        assert!(!replayed(&updates, 3, removal_time.saturating_sub(1)).is_empty());
        assert!(replayed(&updates, 3, EventTime::MAX).is_empty(), "{workers} workers: removed query still has rows");
        eprintln!("{workers} workers: {checked} checks at {} window boundaries, {} updates", boundaries.len(), updates.len());
    }
}
