//! Live queries: what registering more queries costs. A generated race (20 drivers, 3 laps)
//! runs through the telemetry dataflow and the query dataflow on one worker with 0, 1, 10 and
//! 100 queries registered (top-k and thresholds over several metrics); prints the wall time and
//! the extra time per query over the no-query baseline, measured in the same run.
//!
//! `cargo bench --bench live_queries`

use std::time::Instant;

use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::queries::{live_queries, Query};
use pitwall_dataflows::records::{Sample, SourcePosition};
use pitwall_dataflows::sim::{Race, RaceConfig};
use timely::dataflow::operators::{Input, Probe};

fn queries(n: usize) -> Vec<Query> {
    (0..n)
        .map(|i| match i % 2 {
            0 => Query::TopK { metric: (i % 6) as u8, k: 1 + (i % 10) as u32 },
            _ => Query::Above { metric: (i % 6) as u8, threshold_milli: 1_000 * (i as i64 % 300) },
        })
        .collect()
}

/// Seconds to push the race through, and result updates produced.
fn run(records: &[pitwall_dataflows::records::TelemetryRecord], n: usize) -> (f64, usize) {
    let records = records.to_vec();
    let updates = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = updates.clone();
    let started = Instant::now();
    timely::execute_directly(move |worker| {
        let counted = counted.clone();
        let (mut input, mut query_input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, samples) = scope.new_input::<Vec<Sample>>();
            let outputs = telemetry_dataflow(samples, &TelemetryConfig::default());
            let live = live_queries(outputs.sliding.clone(), outputs.alerts.clone());
            let probe = live
                .results
                .inspect(move |_| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })
                .inner
                .probe()
                .0;
            outputs.windows.probe_with(&probe);
            (input, live.input, probe)
        });
        for (id, query) in queries(n).into_iter().enumerate() {
            query_input.insert((id as u64, query));
        }
        for (offset, record) in records.iter().enumerate() {
            if record.session_time_ms > *input.time() {
                input.advance_to(record.session_time_ms);
                query_input.advance_to(record.session_time_ms);
                query_input.flush();
                worker.step();
            }
            input.send(Sample { at: SourcePosition { partition: 0, offset: offset as i64 }, record: record.clone() });
        }
        drop(input);
        drop(query_input);
        while !probe.done() {
            worker.step();
        }
    });
    (started.elapsed().as_secs_f64(), updates.load(std::sync::atomic::Ordering::Relaxed))
}

fn main() {
    let records = Race::generate(&RaceConfig { drivers: 20, laps: 3, seed: 3, inject_anomalies: true }).all_records();
    println!("live queries over a {}-record race (20 drivers, 3 laps), one worker; best of 3", records.len());
    let best = |n: usize| (0..3).map(|_| run(&records, n)).min_by(|a, b| a.0.total_cmp(&b.0)).expect("three runs");
    let (base, _) = best(0);
    println!("{:>8} {:>10} {:>14} {:>16}", "queries", "seconds", "updates", "extra ms/query");
    println!("{:>8} {:>10.3} {:>14} {:>16}", 0, base, 0, "-");
    for n in [1, 10, 100] {
        let (seconds, updates) = best(n);
        println!("{:>8} {:>10.3} {:>14} {:>16.2}", n, seconds, updates, (seconds - base).max(0.0) * 1_000.0 / n as f64);
    }
}
