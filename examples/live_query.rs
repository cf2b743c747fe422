//! A live query over the rolling windows, in memory, on 2 timely workers: the three drivers with
//! the highest top speed in their newest 5 s window, kept current by differential dataflow as a
//! generated race runs, and checked against a recomputation over the last windows.
//!
//! `cargo run --example live_query`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::queries::{live_queries, publish_results, Command, QueryHub, QuerySpec};
use pitwall_dataflows::records::{Sample, SourcePosition, WindowKind, WindowResult};
use pitwall_dataflows::sim::{Race, RaceConfig};
use timely::dataflow::operators::{Input, Inspect, Probe};

fn main() {
    let records = Race::generate(&RaceConfig { drivers: 6, laps: 1, seed: 3, inject_anomalies: true }).all_records();
    // What the HTTP bridge does on `POST /v1/queries`.
    let hub = QueryHub::default();
    let top = hub.register(QuerySpec::TopK { metric: "speed_max".into(), k: 3 }).expect("a valid query");
    let newest: Arc<Mutex<BTreeMap<String, WindowResult>>> = Arc::default();
    let (shared_hub, shared_newest) = (hub.clone(), newest.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (hub, newest) = (shared_hub.clone(), shared_newest.clone());
        let (mut input, mut queries, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, samples) = scope.new_input::<Vec<Sample>>();
            let outputs = telemetry_dataflow(samples, &TelemetryConfig::default());
            // Each driver's newest sliding window, for the check below.
            let sliding = outputs.sliding.inspect(move |w: &WindowResult| {
                let mut newest = newest.lock().expect("newest windows");
                if newest.get(&w.driver).is_none_or(|n| n.end_ms < w.end_ms) && w.window == WindowKind::Sliding {
                    newest.insert(w.driver.clone(), w.clone());
                }
            });
            let live = live_queries(sliding.clone(), outputs.alerts);
            publish_results(live.results, hub.clone());
            (input, live.input, sliding.probe().0)
        });
        // Worker 0 takes the registered queries in, as the job's worker 0 does.
        if index == 0 {
            for command in hub.take_pending() {
                if let Command::Add(id, query) = command {
                    queries.insert((id, query));
                }
            }
        }
        // Each driver's records enter at one worker, in order, as from its Kafka partition.
        for (offset, record) in records.iter().enumerate().filter(|(_, r)| key_partition(r.driver.as_bytes(), 4) as usize % peers == index) {
            if record.session_time_ms > *input.time() {
                input.advance_to(record.session_time_ms);
                queries.advance_to(record.session_time_ms);
                queries.flush();
                worker.step();
            }
            input.send(Sample { at: SourcePosition { partition: 0, offset: offset as i64 }, record: record.clone() });
        }
        input.close();
        queries.close();
        while !probe.done() {
            worker.step();
        }
    })
    .expect("timely runs");
    let (_, rows, time) = hub.result(top).expect("registered");
    println!("top 3 by top speed in their newest window, as of SessionTime {time} ms:");
    for (driver, value) in &rows {
        println!("  {driver:>4}  {value:.0} km/h");
    }
    // The same question asked of the last windows directly.
    let mut expected: Vec<(String, f64)> = newest.lock().expect("newest windows").values().map(|w| (w.driver.clone(), w.speed.max)).collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    expected.truncate(3);
    let close = rows.len() == expected.len() && rows.iter().zip(&expected).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-3);
    assert!(close, "the live query {rows:?} equals the recomputation {expected:?}");
    println!("matches a recomputation over each driver's newest window");
}
