//! Bounded per-key state: 10,000 distinct drivers churn through the telemetry dataflow, each
//! for one second of event time. With a key TTL, every operator's state returns to its baseline
//! (no keys) and the state held while churning stays flat instead of growing with the keys seen.

use pitwall_dataflows::keyed::{KeyedOptions, StateSize};
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::records::{Sample, SourcePosition, TelemetryRecord};
use timely::dataflow::operators::Input;

const KEYS: usize = 10_000;
const SAMPLES_PER_KEY: u64 = 8;
/// A new driver starts every 100 ms of event time and drives for 1 s.
const STAGGER_MS: u64 = 100;
const TTL_MS: u64 = 2_000;

fn sample(key: usize, i: u64) -> Sample {
    let time = 1_000 + key as u64 * STAGGER_MS + i * 125;
    let record = TelemetryRecord {
        lap: Some(1),
        rpm: 10_000.0,
        speed: 200.0,
        gear: 5,
        throttle: 80.0,
        drs: 1,
        distance: i as f64 * 7.0,
        relative_distance: Some(0.1),
        ..TelemetryRecord::example(&format!("K{key:05}"), time)
    };
    Sample { at: SourcePosition { partition: 0, offset: (key as u64 * SAMPLES_PER_KEY + i) as i64 }, record }
}

/// Feeds the churn; returns the total state sampled every 1,000 keys, and at the end.
fn churn(key_ttl_ms: Option<u64>) -> (Vec<StateSize>, StateSize) {
    let mut samples: Vec<Sample> = (0..KEYS).flat_map(|k| (0..SAMPLES_PER_KEY).map(move |i| sample(k, i))).collect();
    samples.sort_by_key(|s| s.record.session_time_ms);
    let mut timeline = Vec::new();
    timely::execute_directly(move |worker| {
        let (mut input, gauges) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Sample>>();
            (
                input,
                telemetry_dataflow(stream, &TelemetryConfig { keyed: KeyedOptions { key_ttl_ms, ..Default::default() }, ..Default::default() }).state,
            )
        });
        let total = |gauges: &[(&str, pitwall_dataflows::keyed::StateGauge)]| {
            gauges.iter().fold(StateSize::default(), |acc, (_, g)| {
                let s = g.get();
                StateSize {
                    keys: acc.keys + s.keys,
                    bytes: acc.bytes + s.bytes,
                    expired: acc.expired + s.expired,
                    peak_keys: acc.peak_keys + s.peak_keys,
                }
            })
        };
        for (n, sample) in samples.into_iter().enumerate() {
            let time = sample.record.session_time_ms;
            if time > *input.time() {
                // Open lap windows hold the probe back on purpose, so step, do not wait for it.
                input.advance_to(time);
                worker.step();
            }
            if n % (1_000 * SAMPLES_PER_KEY as usize) == 0 && n > 0 {
                timeline.push(total(&gauges));
            }
            input.send(sample);
        }
        // Event time moves on past every TTL while the input stays open: keys are evicted by
        // silence, not by the end of the input.
        input.advance_to(*input.time() + 10 * TTL_MS);
        for _ in 0..100 {
            worker.step();
        }
        (timeline, total(&gauges))
    })
}

#[test]
fn state_returns_to_baseline_and_stays_flat_while_keys_churn() {
    let (timeline, end) = churn(Some(TTL_MS));
    let bytes: Vec<usize> = timeline.iter().map(|s| s.bytes).collect();
    let keys: Vec<usize> = timeline.iter().map(|s| s.keys).collect();
    println!("with a {TTL_MS} ms key TTL, every 1,000 of {KEYS} keys: keys held {keys:?}, approx bytes {bytes:?}; at the end {end:?}");
    assert_eq!(end.keys, 0, "state back to its baseline: {end:?}");
    assert_eq!(end.bytes, 0, "{end:?}");
    assert!(end.expired >= KEYS as u64, "the rules' state of every key expired: {end:?}");
    let (min, max) = (*bytes.iter().min().unwrap(), *bytes.iter().max().unwrap());
    assert!(max <= 2 * min, "flat, not growing with keys seen: {bytes:?}");
    assert!(keys.iter().all(|k| *k < 4 * 60), "only recently active keys are held: {keys:?}");

    let (timeline, _) = churn(None);
    let grown: Vec<usize> = timeline.iter().map(|s| s.keys).collect();
    println!("without a TTL: keys held {grown:?}");
    assert!(grown.last().unwrap() > &9_000, "without a TTL the rules remember every key: {grown:?}");
}
