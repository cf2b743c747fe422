//! The producer pool: replays keyed, time-stamped streams into a topic in event-time order,
//! in real time divided by a speed factor or as fast as possible.
//!
//! Each stream (one per key, e.g. a driver) goes to one explicit partition. Producers own whole
//! partitions (`partition % producers`) and interleave their streams by event time, so every
//! partition of the topic is in event-time order and the dataflow's watermark holds exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};

use super::metrics::ProducerMetrics;
use super::{now_ms, KafkaConfig, KafkaError};

/// One key's items in event-time order.
pub struct ReplayStream<T> {
    pub key: String,
    pub partition: i32,
    pub items: Vec<(u64, T)>,
}

#[derive(Clone, Debug, Default)]
pub struct ReplayConfig {
    /// Event time runs this many times faster than wall time; `None`: as fast as possible.
    pub speed: Option<f64>,
    pub producers: usize,
    /// Set to stop early; what was sent is still flushed.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where to count what the producers do, if anywhere.
    pub metrics: Option<ProducerMetrics>,
}

impl ReplayConfig {
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What a replay achieved.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    pub sent: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl ReplayReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A producer context that counts (and logs) deliveries that failed after librdkafka's own
/// retries; `what` names the records in the log line. With metrics ([`DeliveryCounter::counting`])
/// it also counts what was delivered, its bytes and send latency (from the record's timestamp,
/// set at send), and reads librdkafka's statistics for retries and the queue's depth.
pub struct DeliveryCounter {
    what: &'static str,
    failed: AtomicU64,
    metrics: Option<(ProducerMetrics, String)>,
    /// librdkafka's cumulative retries at the last statistics, to count the increase.
    retries: AtomicU64,
}

impl DeliveryCounter {
    pub fn new(what: &'static str) -> DeliveryCounter {
        DeliveryCounter { what, failed: AtomicU64::new(0), metrics: None, retries: AtomicU64::new(0) }
    }

    /// Counts into `metrics` under the label `topic` too.
    pub fn counting(mut self, metrics: Option<ProducerMetrics>, topic: &str) -> DeliveryCounter {
        if let Some(m) = &metrics {
            // Every series is there from the start, at 0.
            for counter in [&m.records, &m.bytes, &m.errors, &m.retries] {
                counter.with_label_values(&[topic]).inc_by(0);
            }
            m.queue.with_label_values(&[topic]).set(0);
            let _ = m.latency.with_label_values(&[topic]);
        }
        self.metrics = metrics.map(|m| (m, topic.to_string()));
        self
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Producer settings the metrics need: librdkafka's statistics every second.
    pub fn settings(&self) -> &'static [(&'static str, &'static str)] {
        if self.metrics.is_some() {
            &[("statistics.interval.ms", "1000")]
        } else {
            &[]
        }
    }
}

impl ClientContext for DeliveryCounter {
    fn stats(&self, statistics: Statistics) {
        let Some((metrics, topic)) = &self.metrics else { return };
        metrics.queue.with_label_values(&[topic]).set(statistics.msg_cnt as i64);
        let retries: u64 = statistics.brokers.values().map(|b| b.txretries).sum();
        let before = self.retries.swap(retries, Ordering::Relaxed);
        metrics.retries.with_label_values(&[topic]).inc_by(retries.saturating_sub(before));
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                if let Some((metrics, topic)) = &self.metrics {
                    metrics.records.with_label_values(&[topic]).inc();
                    metrics.bytes.with_label_values(&[topic]).inc_by(message.payload_len() as u64);
                    if let Some(created) = message.timestamp().to_millis() {
                        let seconds = (now_ms() as i64).saturating_sub(created).max(0) as f64 / 1_000.0;
                        metrics.latency.with_label_values(&[topic]).observe(seconds);
                    }
                }
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Some((metrics, topic)) = &self.metrics {
                    metrics.errors.with_label_values(&[topic]).inc();
                }
                tracing::error!(%error, "{} delivery failed", self.what);
            }
        }
    }
}

/// Longest sleep between checks of the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Replays `streams` into `topic`; `sent` is incremented per message for progress display.
pub fn replay<T, E>(
    config: &KafkaConfig,
    topic: &str,
    streams: Vec<ReplayStream<T>>,
    replay: &ReplayConfig,
    encode: E,
    sent: Arc<AtomicU64>,
) -> Result<ReplayReport, KafkaError>
where
    T: Send + Sync,
    E: Fn(&T, u64) -> Vec<u8> + Sync,
{
    let producers = replay.producers.max(1);
    let first_time = streams.iter().filter_map(|s| s.items.first().map(|(t, _)| *t)).min().unwrap_or(0);
    let mut pools: Vec<Vec<&ReplayStream<T>>> = (0..producers).map(|_| Vec::new()).collect();
    for stream in &streams {
        pools[stream.partition as usize % producers].push(stream);
    }
    let start = Instant::now();
    let failed = AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<(), KafkaError> {
        let mut workers = Vec::new();
        for pool in pools.into_iter().filter(|p| !p.is_empty()) {
            let (encode, sent, failed) = (&encode, sent.clone(), &failed);
            let context = DeliveryCounter::new("telemetry").counting(replay.metrics.clone(), topic);
            let mut settings = vec![
                ("linger.ms", "5"),
                ("batch.num.messages", "10000"),
                ("queue.buffering.max.messages", "1000000"),
                ("message.max.bytes", "10000000"),
            ];
            settings.extend_from_slice(context.settings());
            let producer: ThreadedProducer<DeliveryCounter> = config
                .producer(&settings)
                .create_with_context(context)
                .map_err(KafkaError::client(format!("creating a producer for {}", config.brokers)))?;
            workers.push(scope.spawn(move || -> Result<(), KafkaError> {
                let mut order: Vec<(u64, usize, usize)> =
                    pool.iter().enumerate().flat_map(|(s, stream)| stream.items.iter().enumerate().map(move |(i, (t, _))| (*t, s, i))).collect();
                order.sort_unstable();
                for (time, s, i) in order {
                    if let Some(speed) = replay.speed {
                        let due = start + Duration::from_secs_f64((time - first_time) as f64 / 1_000.0 / speed);
                        // Sleep in short steps so a stop request is seen promptly.
                        while let Some(wait) = due.checked_duration_since(Instant::now()) {
                            if replay.stopped() {
                                break;
                            }
                            std::thread::sleep(wait.min(STOP_CHECK));
                        }
                    }
                    if replay.stopped() {
                        break;
                    }
                    let stream = pool[s];
                    let now = now_ms();
                    let payload = encode(&stream.items[i].1, now);
                    loop {
                        // Timestamped at send: the send latency is measured from it.
                        let record = BaseRecord::to(topic).key(&stream.key).partition(stream.partition).payload(&payload).timestamp(now as i64);
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err((e, _)) => return Err(KafkaError::Client { context: format!("producing to `{topic}`"), source: e }),
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                producer.flush(Duration::from_secs(60)).map_err(KafkaError::client(format!("flushing `{topic}`")))?;
                failed.fetch_add(producer.context().failed(), Ordering::Relaxed);
                Ok(())
            }));
        }
        for worker in workers {
            worker.join().map_err(|_| KafkaError::Other("a producer thread panicked".into()))??;
        }
        Ok(())
    })?;
    Ok(ReplayReport { sent: sent.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed), elapsed: start.elapsed() })
}
