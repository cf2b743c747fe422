//! Ingest-to-alert latency under a steady offered load.
//!
//! A live `pitwall run` reads a fresh topic while the producer pool replays records at a fixed
//! rate (the race's event time sped up to match). Every record carries `produced_at_ms`, the
//! producer's wall clock when it handed the record to Kafka (ingest); every alert carries the
//! `produced_at_ms` of the sample that confirmed it. Two latencies per alert:
//! - published: the alert message's Kafka timestamp (CreateTime: when pitwall's sink handed it to
//!   its producer) minus ingest;
//! - received: when this harness's consumer got the alert minus ingest (adds the sink's batching
//!   and one more fetch).
//!
//! For scale, the transport floor: a plain consumer in this harness reads the telemetry topic
//! live, and receipt minus ingest of every record is what Kafka alone costs on this machine.
//!
//! Alerts confirmed by records of the first second (start-up) and alerts published after the
//! shutdown request (the final drain) are left out.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::tail::read_topic;
use pitwall_connectors::kafka::{now_ms, KafkaConfig, KafkaError};
use pitwall_dataflows::records::{Alert, TelemetryRecord};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use super::process::Measured;
use super::report::{Percentiles, Row};
use crate::commands::produce::{produce_records, speed_for_rate};

/// Records of the first this-many ms of a phase only warm the pipeline up.
const WARM_UP_MS: u64 = 1_000;

/// One alert as the collector saw it: (ingest, published, received), wall-clock ms.
type Seen = (u64, u64, u64);

/// The one field of a telemetry record the transport floor needs.
#[derive(serde::Deserialize)]
struct Stamp {
    produced_at_ms: Option<u64>,
}

/// One offered rate.
pub struct Phase<'a> {
    pub kafka: &'a KafkaConfig,
    pub broker: &'a super::broker::Broker,
    pub rate: u64,
    pub workers: usize,
    pub run_args: &'a [String],
    pub nonce: u32,
    pub logs: &'a Path,
    pub timeout: Duration,
}

impl Phase<'_> {
    pub fn run(&self, records: &[TelemetryRecord]) -> Result<Row> {
        let topic = format!("bench-lat-{}-{}", self.rate, self.nonce);
        let alerts = format!("{topic}-alerts");
        self.broker.create_topics(self.kafka, &[(topic.clone(), 8), (alerts.clone(), 3)])?;
        let stop = Arc::new(AtomicBool::new(false));
        let collector = collect(self.kafka, &alerts, &stop, |message, received| {
            let published = message.timestamp().to_millis().unwrap_or(0).max(0) as u64;
            let alert: Option<Alert> = message.payload().and_then(|p| serde_json::from_slice(p).ok());
            alert.and_then(|a| a.produced_at_ms).map(|ingest| (ingest, published, received))
        });
        let floor = collect(self.kafka, &topic, &stop, |message, received| {
            let stamp: Option<Stamp> = message.payload().and_then(|p| serde_json::from_slice(p).ok());
            stamp.and_then(|s| s.produced_at_ms).map(|ingest| (ingest, received))
        });
        let group = format!("bench-lat-{}-{}", self.rate, self.nonce);
        let run = Measured::spawn(
            super::run_command(self.kafka, &topic, &alerts, &group, self.workers, self.run_args),
            &format!("latency-{}", self.rate),
            self.logs,
        )?;
        // Let the job start and take its partitions before the load begins.
        std::thread::sleep(Duration::from_secs(2));
        let phase_start = now_ms();
        let config = ReplayConfig { speed: Some(speed_for_rate(records, self.rate as f64)), producers: 4, stop: None, metrics: None };
        let replayed = produce_records(self.kafka, &topic, records.to_vec(), &config, true)?;
        // Allowed lateness and idle detection close the last windows within ~1 s.
        std::thread::sleep(Duration::from_millis(1_500));
        let shutdown_at = now_ms();
        run.terminate();
        let finished = run.finish(self.timeout)?;
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Seen> = collector.join().map_err(|_| anyhow::anyhow!("the alert collector panicked"))?.context("reading alerts")?;
        let transport = floor.join().map_err(|_| anyhow::anyhow!("the transport reader panicked"))?.context("reading telemetry")?;
        let transport = percentiles(transport.iter().filter(|(ingest, _)| *ingest >= phase_start + WARM_UP_MS).map(|(i, r)| r.saturating_sub(*i)))?;
        let counted: Vec<Seen> =
            seen.iter().copied().filter(|(ingest, published, _)| *ingest >= phase_start + WARM_UP_MS && *published <= shutdown_at).collect();
        if counted.is_empty() {
            bail!("no alerts to time at {} msg/s ({} seen in all): raise --latency-seconds", self.rate, seen.len());
        }
        let published = percentiles(counted.iter().map(|(i, p, _)| p.saturating_sub(*i)))?;
        let received = percentiles(counted.iter().map(|(i, _, r)| r.saturating_sub(*i)))?;
        let mut row = Row::latency(self.rate, self.workers, replayed.sent, replayed.rate(), published, received, finished.peak_rss_mb);
        row.transport = transport;
        Ok(row)
    }
}

/// Reads `topic` live on a thread until `stop`, keeping what `pick` makes of each message (given
/// its receipt time, wall-clock ms); the thread returns the list.
fn collect<T: Send + 'static>(
    kafka: &KafkaConfig,
    topic: &str,
    stop: &Arc<AtomicBool>,
    pick: impl Fn(&BorrowedMessage<'_>, u64) -> Option<T> + Send + 'static,
) -> JoinHandle<Result<Vec<T>, KafkaError>> {
    let (kafka, topic, stop) = (kafka.clone(), topic.to_string(), stop.clone());
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        read_topic(&kafka, &topic, true, false, &stop, |message| kept.extend(pick(message, now_ms())))?;
        Ok(kept)
    })
}

/// p50/p95/p99/max (ms) of `values`, via hdrhistogram.
pub fn percentiles(values: impl Iterator<Item = u64>) -> Result<Percentiles> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for value in values {
        histogram.record(value)?;
    }
    Ok(Percentiles {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.50) as f64,
        p95: histogram.value_at_quantile(0.95) as f64,
        p99: histogram.value_at_quantile(0.99) as f64,
        max: histogram.max() as f64,
    })
}
