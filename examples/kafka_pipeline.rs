//! The whole telemetry job through Kafka, on the embedded broker (librdkafka's mock cluster):
//! produce a generated race, run the dataflow on 2 workers to the end, count what came out.
//!
//! `cargo run --example kafka_pipeline`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pitwall::commands::produce::produce_records;
use pitwall::job::{run_job, JobConfig};
use pitwall::topics::*;
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_dataflows::sim::{Race, RaceConfig};
use rdkafka::mocking::MockCluster;

fn main() -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    for (topic, partitions) in [(TELEMETRY, 4), (ALERTS, ALERT_PARTITIONS), (WINDOWS, 4), (DLQ, 1), (LATE, 1)] {
        cluster.create_topic(topic, partitions, 1)?;
    }
    let kafka = KafkaConfig::new(cluster.bootstrap_servers());
    let race = Race::generate(&RaceConfig { drivers: 6, laps: 1, ..Default::default() });
    let sent = produce_records(&kafka, TELEMETRY, race.all_records(), &ReplayConfig { speed: None, producers: 2, stop: None, metrics: None }, true)?;
    println!("produced {} records at {:.0} msg/s", sent.sent, sent.rate());
    let mut config = JobConfig::new(kafka);
    config.dataflow.group = "example".into();
    config.exit_at_end = true;
    let report = run_job(config, timely::Config::process(2), Arc::new(AtomicBool::new(false)))?;
    println!(
        "processed {} records: {} alerts ({} injected), {} window results",
        report.records,
        report.alerts,
        race.ground_truth.len(),
        report.windows
    );
    anyhow::ensure!(report.records as usize == race.record_count(), "every record processed");
    Ok(())
}
