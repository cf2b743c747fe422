//! Rolling windows on a generated race, in memory, on 2 timely workers.
//!
//! `cargo run --example windows` prints each driver's lap windows.

use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::records::{Sample, SourcePosition, WindowKind};
use pitwall_dataflows::sim::{Race, RaceConfig};
use timely::dataflow::operators::{Input, Inspect, Probe};

fn main() {
    let records = Race::generate(&RaceConfig { drivers: 4, laps: 2, seed: 1, inject_anomalies: false }).all_records();
    timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, samples) = scope.new_input::<Vec<Sample>>();
            let outputs = telemetry_dataflow(samples, &TelemetryConfig::default());
            let windows = outputs.windows.inspect(|w| {
                if let WindowKind::Lap { lap } = w.window {
                    println!(
                        "{} lap {lap}: {} samples, {:.1} s, avg {:.0} km/h, max {:.0} km/h",
                        w.driver,
                        w.count,
                        (w.end_ms - w.start_ms) as f64 / 1e3,
                        w.speed.mean,
                        w.speed.max
                    );
                }
            });
            (input, windows.probe().0)
        });
        for (i, record) in records.iter().enumerate().filter(|(i, _)| i % peers == index) {
            input.advance_to(record.session_time_ms.max(*input.time()));
            input.send(Sample { at: SourcePosition { partition: 0, offset: i as i64 }, record: record.clone() });
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
    })
    .expect("timely runs");
}
