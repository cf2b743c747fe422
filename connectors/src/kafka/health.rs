//! Source health: an explicit "stalled" state per partition, decided by asking the broker.
//!
//! A `LivenessProbe` thread per source asks for each owned partition's offsets every
//! [`PROBE_INTERVAL`] with a [`PROBE_TIMEOUT`]. A failed answer marks the partition stalled with
//! the cause; the next good answer clears it. Warnings are rate-limited to one per
//! [`WARN_EVERY`] per partition. Readers poll [`SourceHealth`]; nothing here blocks the dataflow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::KafkaConfig;

/// How often the broker is asked.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long an answer may take before the partition counts as stalled.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per partition this often while it stays stalled.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The health of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionHealth {
    pub partition: i32,
    /// `Some(cause)` while stalled.
    pub stalled: Option<String>,
    /// The high watermark of the last good answer.
    pub high_watermark: Option<i64>,
}

/// What the probe knows of one partition.
#[derive(Debug)]
struct Probed {
    partition: i32,
    /// Since when and why it is stalled.
    stall: Option<(Instant, String)>,
    high_watermark: Option<i64>,
}

#[derive(Debug, Default)]
struct Shared {
    partitions: Vec<Probed>,
    /// Stall episodes begun so far.
    episodes: u64,
}

/// Health of a source's partitions, shared with the probe thread; the probe stops on drop.
#[derive(Clone, Debug)]
pub struct SourceHealth {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl SourceHealth {
    /// Starts probing `partitions` of `topic`.
    pub fn start(kafka: &KafkaConfig, topic: &str, partitions: &[i32]) -> SourceHealth {
        let shared = Arc::new(Mutex::new(Shared {
            partitions: partitions.iter().map(|p| Probed { partition: *p, stall: None, high_watermark: None }).collect(),
            episodes: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let health = SourceHealth { shared: shared.clone(), stop: stop.clone() };
        if partitions.is_empty() {
            return health;
        }
        let (kafka, topic) = (kafka.clone(), topic.to_string());
        std::thread::Builder::new()
            .name(format!("pitwall-liveness-{topic}"))
            .spawn(move || probe(kafka, topic, shared, stop))
            .expect("spawn the liveness probe");
        health
    }

    /// Every partition's health.
    pub fn partitions(&self) -> Vec<PartitionHealth> {
        let shared = self.shared.lock().expect("health lock");
        shared
            .partitions
            .iter()
            .map(|p| PartitionHealth { partition: p.partition, stalled: p.stall.as_ref().map(|(_, c)| c.clone()), high_watermark: p.high_watermark })
            .collect()
    }

    /// Stall episodes so far.
    pub fn episodes(&self) -> u64 {
        self.shared.lock().expect("health lock").episodes
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether its source is gone (its dataflow dropped or finished).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn probe(kafka: KafkaConfig, topic: String, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let consumer = match kafka.plain_consumer("pitwall-liveness") {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(%error, "liveness probe could not start; stalls will not be reported");
            return;
        }
    };
    let mut last_warning: Vec<Option<Instant>> = vec![None; shared.lock().expect("health lock").partitions.len()];
    while !stop.load(Ordering::Relaxed) {
        let partitions: Vec<i32> = shared.lock().expect("health lock").partitions.iter().map(|p| p.partition).collect();
        for (i, partition) in partitions.into_iter().enumerate() {
            let answer = consumer.fetch_watermarks(&topic, partition, PROBE_TIMEOUT);
            let mut guard = shared.lock().expect("health lock");
            let Shared { partitions, episodes } = &mut *guard;
            let Probed { stall: state, high_watermark: high, .. } = &mut partitions[i];
            if let Ok((_, h)) = &answer {
                *high = Some(*h);
            }
            match (answer, state.as_ref()) {
                (Ok(_), Some((since, cause))) => {
                    tracing::warn!(topic = %topic, partition, stalled_for = ?since.elapsed(), %cause, "source recovered");
                    *state = None;
                    last_warning[i] = None;
                }
                (Ok(_), None) => {}
                (Err(error), current) => {
                    // Counted as it begins: a source dropped while stalled (its lease lost in
                    // the outage) has still seen one.
                    if current.is_none() {
                        *episodes += 1;
                    }
                    let since = current.map_or_else(Instant::now, |(since, _)| *since);
                    let cause = format!("broker did not answer for `{topic}` partition {partition}: {error}");
                    if last_warning[i].is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(topic = %topic, partition, stalled_for = ?since.elapsed(), %cause, "source stalled; retrying");
                        last_warning[i] = Some(Instant::now());
                    }
                    *state = Some((since, cause));
                }
            }
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}
