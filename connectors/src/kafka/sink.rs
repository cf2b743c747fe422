//! The Kafka sink of a timely dataflow, with delivery tracking.
//!
//! Records are serialized to JSON and handed to a per-worker producer. The sink holds a
//! capability for every timestamp with a message not yet acknowledged by the broker, so a probe
//! after it passes a time only when everything before it is delivered: the source commits
//! offsets on that. Messages whose delivery fails are sent again (no loss while the broker is
//! down; librdkafka also retries within `message.timeout.ms`).
//!
//! A message the broker will never take (over a size limit, a record it calls invalid:
//! [`is_permanent`]) is not sent again: its place is taken by a dead letter *by reference* on the
//! producer's dead-letter topic (where it was going, its key and size, the record it came from
//! when the route names one, the reason and the payload's first bytes), delivered under the same
//! time, so progress goes on and the loss is on record. Each sink counts them
//! ([`SinkHandle::undeliverable`]).
//!
//! A producer that hits a librdkafka *fatal* error (an idempotent producer whose broker lost
//! its state, for one) never sends again. The worker's [`KafkaProducer`] then builds a new
//! producer from the same settings; dropping the old one purges what it still held, and those
//! messages come back through their delivery reports into the ledgers' resend lists, so the
//! sinks send them again through the new producer: nothing is lost and the job goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use serde::Serialize;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::scheduling::SyncActivator;

use pitwall_dataflows::records::{DeadLetter, LateRecord, SourcePosition};

use super::{KafkaConfig, KafkaError};

/// Where one output record goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub topic: String,
    pub key: Option<String>,
    pub partition: Option<i32>,
    /// The input record this output stands for (a late record, a dead letter), named in the
    /// dead letter that replaces it should the broker refuse it for good.
    pub origin: Option<Origin>,
}

/// Where an input record was read: topic, partition and offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub at: SourcePosition,
}

impl Route {
    /// To `topic` with `key`, partitioned by the key (murmur2, like Kafka's Java client).
    pub fn keyed(topic: &str, key: &str) -> Route {
        Route { topic: topic.to_string(), key: Some(key.to_string()), partition: None, origin: None }
    }
}

/// One message in flight.
pub struct Delivery {
    ledger: Arc<Ledger>,
    time: u64,
    topic: String,
    key: Option<String>,
    partition: Option<i32>,
    payload: Vec<u8>,
    origin: Option<Origin>,
    /// This is the dead letter of a refused message: refused too, it is dropped (logged), not
    /// replaced again.
    dead_letter: bool,
}

/// Errors after which the broker (or librdkafka) will never take the message as it is: sending
/// it again cannot succeed.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRequiredAcks
    )
}

impl Delivery {
    /// What replaces a message the broker refused for good: a dead letter naming it (or the
    /// input record it stands for) on `dead_letter_topic`, under the same time.
    fn into_dead_letter(mut self: Box<Self>, dead_letter_topic: &str, reason: &str) -> Box<Self> {
        let origin = self
            .origin
            .take()
            .unwrap_or_else(|| Origin { topic: self.topic.clone(), at: SourcePosition { partition: self.partition.unwrap_or(-1), offset: -1 } });
        let reason = format!("undeliverable to `{}`: {reason}", self.topic);
        let letter = DeadLetter::new(&origin.topic, origin.at, self.key.as_deref().map(str::as_bytes), &self.payload, reason);
        self.payload = serde_json::to_vec(&letter).expect("a dead letter serializes to JSON");
        self.topic = dead_letter_topic.to_string();
        (self.partition, self.dead_letter) = (None, true);
        self
    }
}

/// Per-sink bookkeeping of unacknowledged messages by timestamp.
#[derive(Default)]
pub struct Ledger {
    outstanding: Mutex<BTreeMap<u64, usize>>,
    /// Boxed as librdkafka hands them back, to be resent as they are.
    #[allow(clippy::vec_box)]
    retries: Mutex<Vec<Box<Delivery>>>,
    activator: Mutex<Option<SyncActivator>>,
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    /// Messages refused for good (each replaced by a dead letter, or dropped if that was refused).
    undeliverable: std::sync::atomic::AtomicU64,
    /// Where those dead letters go (the producer's).
    dead_letter_topic: Option<String>,
}

impl Ledger {
    /// `count` more messages in flight at `time` (one lock per batch, not per message: the
    /// delivery thread takes the same lock for every acknowledgement).
    fn add(&self, time: u64, count: usize) {
        if count > 0 {
            *self.outstanding.lock().expect("ledger lock").entry(time).or_default() += count;
        }
    }

    /// One message at `time` acknowledged; true when it was the last one at that time, the only
    /// case in which the sink's hold on its output can move.
    fn settle(&self, time: u64) -> bool {
        let mut outstanding = self.outstanding.lock().expect("ledger lock");
        match outstanding.get_mut(&time) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                outstanding.remove(&time);
                true
            }
            None => false,
        }
    }

    fn earliest(&self) -> Option<u64> {
        self.outstanding.lock().expect("ledger lock").keys().next().copied()
    }

    fn wake(&self) {
        if let Some(activator) = self.activator.lock().expect("ledger lock").as_ref() {
            let _ = activator.activate();
        }
    }
}

/// Producer context that settles deliveries in their sink's ledger.
pub struct TrackingContext;

impl ClientContext for TrackingContext {}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let ledger = delivery.ledger.clone();
        // The sink operator is woken only when it has something to do: a time fully acknowledged
        // (its output may advance) or a message to resend. Waking it for every acknowledgement
        // cost a cross-thread activation per message (~130,000 per million telemetry records).
        let wake = match result {
            Ok(_) => {
                ledger.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ledger.settle(delivery.time)
            }
            Err((error, message)) => {
                ledger.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Topic, key and payload travelled with the message, not the opaque: take them
                // back from there.
                let mut delivery = delivery;
                delivery.topic = message.topic().to_string();
                delivery.key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
                delivery.payload = message.payload().unwrap_or_default().to_vec();
                if error.rdkafka_error_code().is_some_and(is_permanent) {
                    match refused(delivery, &error.to_string()) {
                        Some(letter) => ledger.retries.lock().expect("ledger lock").push(letter),
                        None => return,
                    }
                } else {
                    tracing::warn!(%error, topic = message.topic(), "delivery failed; will resend");
                    ledger.retries.lock().expect("ledger lock").push(delivery);
                }
                true
            }
        };
        if wake {
            ledger.wake();
        }
    }
}

/// A message the broker refused for good: counted, logged, and turned into its dead letter.
/// `None`: dropped (there is no dead-letter topic, or it was the dead letter), its time settled
/// in its ledger so the sink's hold can move.
fn refused(delivery: Box<Delivery>, reason: &str) -> Option<Box<Delivery>> {
    let ledger = delivery.ledger.clone();
    let (topic, key, bytes) = (&delivery.topic, &delivery.key, delivery.payload.len());
    let dead_letter_topic = match (&ledger.dead_letter_topic, delivery.dead_letter) {
        (_, true) => {
            tracing::error!(topic, ?key, bytes, reason, "a dead letter was refused too: dropped");
            None
        }
        (None, false) => {
            tracing::error!(topic, ?key, bytes, reason, "the broker will never take this message and there is no dead-letter topic: dropped");
            None
        }
        (Some(dlq), false) => {
            tracing::error!(
                topic,
                ?key,
                bytes,
                reason,
                dlq,
                "the broker will never take this message: its dead letter goes to the dead-letter topic instead"
            );
            Some(dlq)
        }
    };
    if !delivery.dead_letter {
        ledger.undeliverable.fetch_add(1, Ordering::Relaxed);
    }
    match dead_letter_topic {
        Some(dlq) => Some(delivery.into_dead_letter(dlq, reason)),
        None => {
            if ledger.settle(delivery.time) {
                ledger.wake();
            }
            None
        }
    }
}

type TrackedProducer = ThreadedProducer<TrackingContext>;

/// One producer per worker, shared by that worker's sinks; rebuilt after a fatal error.
#[derive(Clone)]
pub struct KafkaProducer {
    current: Arc<RwLock<Arc<TrackedProducer>>>,
    config: KafkaConfig,
    rebuilds: Arc<AtomicU64>,
    /// Where the dead letters of messages the broker refuses for good go.
    dead_letter_topic: Option<String>,
}

/// How long a full local queue is waited on before trying again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(1);

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<KafkaProducer, KafkaError> {
        let producer = Self::build(config)?;
        Ok(KafkaProducer {
            current: Arc::new(RwLock::new(Arc::new(producer))),
            config: config.clone(),
            rebuilds: Arc::default(),
            dead_letter_topic: None,
        })
    }

    /// Sends the dead letter of each message the broker refuses for good to `topic` (without
    /// one, such a message is dropped, logged and counted).
    pub fn with_dead_letters(mut self, topic: &str) -> KafkaProducer {
        self.dead_letter_topic = Some(topic.to_string());
        self
    }

    fn build(config: &KafkaConfig) -> Result<TrackedProducer, KafkaError> {
        config
            .producer(&[
                ("linger.ms", "5"),
                ("queue.buffering.max.messages", "1000000"),
                ("message.max.bytes", "10000000"),
                ("partitioner", "murmur2_random"),
                // Not idempotent by default: a broker that loses producer state on restart
                // (Tansu 0.6 does) turns every later send into a fatal error, and a fatal producer
                // never recovers. `-X enable.idempotence=true` turns it on for brokers that keep it.
            ])
            .create_with_context(TrackingContext)
            .map_err(KafkaError::client(format!("creating a producer for {}", config.brokers)))
    }

    fn producer(&self) -> Arc<TrackedProducer> {
        self.current.read().expect("producer lock").clone()
    }

    /// How many times a fatal error made this producer be rebuilt.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Replaces `failed` (if it is still the current producer) with a new one. The old one is
    /// dropped here: its purged messages come back as failed deliveries, to be resent.
    fn rebuild(&self, failed: Arc<TrackedProducer>, reason: &str) {
        let old = {
            let mut current = self.current.write().expect("producer lock");
            if !Arc::ptr_eq(&current, &failed) {
                return;
            }
            match Self::build(&self.config) {
                Ok(fresh) => std::mem::replace(&mut *current, Arc::new(fresh)),
                Err(error) => {
                    tracing::error!(%error, "could not rebuild the producer after a fatal error; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
        };
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::error!(reason, "the Kafka producer hit a fatal error: built a new one; what it held is sent again");
        drop(failed);
        drop(old);
    }

    /// Makes the current producer fail for good, as a broker that lost an idempotent producer's
    /// state does (librdkafka's test hook); for tests of the rebuild.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        let producer = self.producer();
        let reason = std::ffi::CString::new("injected by a test").expect("no NUL");
        // SAFETY: a valid producer handle, an error code and a NUL-terminated string.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }

    /// Sends every delivery (in order), each until the producer has taken it.
    fn send_all(&self, deliveries: impl IntoIterator<Item = Box<Delivery>>) {
        // One producer handle per batch (a lock and an atomic count per message otherwise);
        // refreshed only when a fatal error replaced it.
        let mut producer = self.producer();
        for delivery in deliveries {
            let mut delivery = delivery;
            loop {
                // librdkafka copies topic, key and payload: the opaque keeps its own for a resend.
                let (topic, key, partition, payload) =
                    (std::mem::take(&mut delivery.topic), delivery.key.take(), delivery.partition, std::mem::take(&mut delivery.payload));
                let mut record = BaseRecord::with_opaque_to(&topic, delivery).payload(&payload);
                if let Some(key) = &key {
                    record = record.key(key);
                }
                if let Some(partition) = partition {
                    record = record.partition(partition);
                }
                let outcome = producer.send(record);
                let (error, record) = match outcome {
                    Ok(()) => break,
                    Err(failed) => failed,
                };
                delivery = record.delivery_opaque;
                (delivery.topic, delivery.key, delivery.payload) = (topic, key, payload);
                if error.rdkafka_error_code().is_some_and(is_permanent) {
                    match refused(delivery, &error.to_string()) {
                        Some(letter) => delivery = letter,
                        None => break,
                    }
                } else if let Some((_, reason)) = producer.client().fatal_error() {
                    self.rebuild(producer, &reason);
                    producer = self.producer();
                } else if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                } else {
                    tracing::warn!(%error, topic = %delivery.topic, "send failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Waits for every queued message (used at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer().flush(timeout).map_err(KafkaError::client("flushing the producer"))
    }
}

/// Counters of one sink.
#[derive(Clone)]
pub struct SinkHandle {
    ledger: Arc<Ledger>,
}

impl SinkHandle {
    pub fn delivered(&self) -> u64 {
        self.ledger.delivered.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn failed_attempts(&self) -> u64 {
        self.ledger.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Messages the broker refused for good (each replaced by a dead letter when the producer
    /// has a dead-letter topic).
    pub fn undeliverable(&self) -> u64 {
        self.ledger.undeliverable.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Publishes every record of `stream` as JSON to where `route` says. The returned stream carries
/// no data; its frontier passes a time once all records before it are acknowledged.
pub fn publish<'s, T, F>(stream: Stream<'s, u64, Vec<T>>, producer: &KafkaProducer, name: &str, route: F) -> (Stream<'s, u64, Vec<()>>, SinkHandle)
where
    T: Serialize + Clone + 'static,
    F: Fn(&T) -> Route + 'static,
{
    let producer = producer.clone();
    let ledger = Arc::new(Ledger { dead_letter_topic: producer.dead_letter_topic.clone(), ..Ledger::default() });
    let handle = SinkHandle { ledger: ledger.clone() };
    let scope = stream.scope();
    let out = stream.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, name, move |initial, info| {
        *ledger.activator.lock().expect("ledger lock") = Some(scope.worker().sync_activator_for(info.address.to_vec()));
        let mut held: Option<Capability<u64>> = Some(initial);
        // The largest payload so far (up to 16 KiB): one sink's records are alike in size, so each
        // is encoded into a buffer that fits it at once instead of one grown (and copied) from
        // 128 bytes.
        let mut size_hint = 0;
        move |(input, frontier), _output| {
            input.for_each(|cap, data| {
                // Messages sent under no capability (an empty stamp) are tracked conservatively at 0.
                let time = cap.least().copied().unwrap_or(0);
                // Counted before any is sent, so no acknowledgement can come first.
                ledger.add(time, data.len());
                producer.send_all(data.drain(..).map(|record| {
                    let Route { topic, key, partition, origin } = route(&record);
                    let mut payload = Vec::with_capacity(size_hint);
                    serde_json::to_writer(&mut payload, &record).expect("output records serialize to JSON");
                    size_hint = size_hint.max(payload.len()).min(16 << 10);
                    Box::new(Delivery { ledger: ledger.clone(), time, topic, key, partition, payload, origin, dead_letter: false })
                }));
            });
            let retries: Vec<Box<Delivery>> = std::mem::take(&mut *ledger.retries.lock().expect("ledger lock"));
            producer.send_all(retries);
            let hold = frontier.frontier().first().copied().into_iter().chain(ledger.earliest()).min();
            match (hold, held.as_mut()) {
                (Some(time), Some(cap)) => {
                    if time > *cap.time() {
                        cap.downgrade(&time);
                    }
                }
                (None, _) => held = None,
                (Some(_), None) => {}
            }
        }
    });
    (out, handle)
}

/// What [`publish_rejects`] returns: each sink's completion stream and handle.
pub struct RejectSinks<'s> {
    pub dead: (Stream<'s, u64, Vec<()>>, SinkHandle),
    pub late: (Stream<'s, u64, Vec<()>>, SinkHandle),
}

/// Publishes a source's rejects, each keyed by its original key: dead letters to `dlq_topic`,
/// late records to `late_topic`. `name` prefixes the operators' names.
pub fn publish_rejects<'s>(
    dead: Stream<'s, u64, Vec<DeadLetter>>,
    late: Stream<'s, u64, Vec<LateRecord>>,
    producer: &KafkaProducer,
    dlq_topic: &str,
    late_topic: &str,
    name: &str,
) -> RejectSinks<'s> {
    let dlq_topic = dlq_topic.to_string();
    let dead = publish(dead, producer, &format!("{name}DeadLetterSink"), move |d: &DeadLetter| Route {
        topic: dlq_topic.clone(),
        key: d.key.clone(),
        partition: None,
        origin: Some(Origin { topic: d.topic.clone(), at: SourcePosition { partition: d.partition, offset: d.offset } }),
    });
    let late_topic = late_topic.to_string();
    let late = publish(late, producer, &format!("{name}LateSink"), move |l: &LateRecord| Route {
        topic: late_topic.clone(),
        key: l.key.clone(),
        partition: None,
        origin: Some(Origin { topic: l.topic.clone(), at: SourcePosition { partition: l.partition, offset: l.offset } }),
    });
    RejectSinks { dead, late }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn only_the_last_acknowledgement_of_a_time_completes_it() {
        let ledger = Ledger::default();
        ledger.add(5, 2);
        ledger.add(7, 1);
        assert_eq!(ledger.earliest(), Some(5));
        assert!(!ledger.settle(5), "one of two at time 5 still out");
        assert_eq!(ledger.earliest(), Some(5));
        assert!(ledger.settle(7), "time 7 done, though 5 is not");
        assert_eq!(ledger.earliest(), Some(5));
        assert!(ledger.settle(5), "the last at time 5");
        assert_eq!(ledger.earliest(), None);
        assert!(!ledger.settle(5), "an acknowledgement for no outstanding time changes nothing");
    }
}
