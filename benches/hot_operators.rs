//! Criterion micro-benchmarks of the per-record hot paths, without Kafka: JSON decode of a
//! telemetry record, alert encode, the window aggregate, each anomaly rule, and the whole
//! telemetry dataflow on one worker over an in-memory race (throughput in samples/s).
//!
//! `cargo bench --bench hot_operators`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pitwall_dataflows::anomalies::{detect_in_order, AnomalyConfig};
use pitwall_dataflows::decode::{decode_telemetry, encode_telemetry, DecodePolicy};
use pitwall_dataflows::pipeline::{telemetry_dataflow, TelemetryConfig};
use pitwall_dataflows::records::{AnomalyKind, Sample, SourcePosition, TelemetryRecord};
use pitwall_dataflows::sim::{Race, RaceConfig};
use pitwall_dataflows::windows::WindowAccumulator;
use timely::dataflow::operators::{Input, Probe};

fn one_driver() -> Vec<TelemetryRecord> {
    Race::generate(&RaceConfig { drivers: 1, laps: 2, seed: 1, inject_anomalies: true }).drivers.remove(0).1
}

fn codec(c: &mut Criterion) {
    let record = one_driver().remove(300);
    let bytes = encode_telemetry(&record);
    let policy = DecodePolicy::default();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_telemetry", |b| b.iter(|| decode_telemetry(Some(b"VER"), &bytes, &policy).unwrap()));
    group.bench_function("encode_telemetry", |b| b.iter(|| encode_telemetry(&record)));
    let alert = detect_in_order(&AnomalyConfig::default(), &one_driver()).remove(0);
    group.bench_function("encode_alert", |b| b.iter(|| serde_json::to_vec(&alert).unwrap()));
    group.finish();
}

fn per_sample(c: &mut Criterion) {
    let rows = one_driver();
    let mut group = c.benchmark_group("per_sample");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("window_accumulator", |b| {
        b.iter(|| {
            let mut acc = WindowAccumulator::default();
            rows.iter().for_each(|r| acc.push(r));
            acc.count()
        })
    });
    for kind in AnomalyKind::ALL {
        let config = AnomalyConfig { enabled: vec![kind], ..Default::default() };
        group.bench_function(format!("rule_{}", kind.name()), |b| b.iter(|| detect_in_order(&config, &rows).len()));
    }
    group.finish();
}

fn dataflow(c: &mut Criterion) {
    let race = Race::generate(&RaceConfig { drivers: 20, laps: 1, seed: 2, inject_anomalies: true });
    let samples: Vec<Sample> = race
        .all_records()
        .into_iter()
        .enumerate()
        .map(|(i, record)| Sample { at: SourcePosition { partition: 0, offset: i as i64 }, record })
        .collect();
    let mut group = c.benchmark_group("dataflow");
    group.sample_size(10);
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("telemetry_one_worker", |b| {
        b.iter_batched(
            || samples.clone(),
            |samples| {
                timely::execute_directly(move |worker| {
                    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                        let (input, stream) = scope.new_input::<Vec<Sample>>();
                        let outputs = telemetry_dataflow(stream, &TelemetryConfig::default());
                        let (probe, _) = outputs.windows.probe();
                        outputs.alerts.probe_with(&probe);
                        (input, probe)
                    });
                    // Batches advance the input like the Kafka source's poll batches do.
                    for chunk in samples.chunks(512) {
                        let time = chunk[0].record.session_time_ms.max(*input.time());
                        input.advance_to(time);
                        input.send_batch(&mut chunk.to_vec());
                        worker.step();
                    }
                    drop(input);
                    while !probe.done() {
                        worker.step();
                    }
                })
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, codec, per_sample, dataflow);
criterion_main!(benches);
