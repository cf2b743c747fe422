//! A kcat-like reader: every message of a topic with its partition, offset and key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::config::METADATA_TIMEOUT;
use super::{KafkaConfig, KafkaError};

/// One message as `pitwall tail` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct TailMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The value as JSON when it parses, else as a string.
    pub value: serde_json::Value,
}

/// Reads `topic` from the beginning (or only new messages), calling `each` per message. With
/// `exit_at_end`, returns once every partition is read up to the end offsets seen at start.
pub fn tail(
    config: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    exit_at_end: bool,
    stop: &AtomicBool,
    mut each: impl FnMut(TailMessage),
) -> Result<u64, KafkaError> {
    let read = read_topic(config, topic, from_beginning, exit_at_end, stop, |message| {
        let payload = message.payload().unwrap_or_default();
        let value = serde_json::from_slice(payload).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()));
        each(TailMessage {
            topic: topic.to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
        })
    })?;
    Ok(read.messages)
}

/// What [`read_topic`] read.
#[derive(Clone, Copy, Debug)]
pub struct TopicRead {
    pub messages: u64,
    /// When the last message had been handed to `each` and it had returned (`None`: no message).
    pub last_message: Option<std::time::Instant>,
}

/// How long [`read_topic`] rides out broker trouble (nothing but errors from librdkafka, which
/// reconnects by itself) before it gives up with the error.
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(30);

/// The plain reader behind [`tail`]: every message of every partition of `topic`, raw, with its
/// Kafka timestamp. Stops when `stop` is set, or with `exit_at_end` once caught up to the end
/// offsets seen at start. Returns how many messages it read, and when it handled the last.
///
/// librdkafka hands connection trouble to the reader as consumption errors (a broker closing a
/// connection, "all brokers down" for a moment) and reconnects by itself: the reader logs each
/// and goes on, and fails only on an error librdkafka calls fatal or on trouble with no message
/// or end of partition in between for [`OUTAGE_LIMIT`].
pub fn read_topic(
    config: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    exit_at_end: bool,
    stop: &AtomicBool,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<TopicRead, KafkaError> {
    let consumer = config.plain_consumer("pitwall-tail")?;
    let count = config.partition_count(&consumer, topic)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for p in 0..count {
        assignment
            .add_partition_offset(topic, p, if from_beginning { Offset::Beginning } else { Offset::End })
            .map_err(KafkaError::client("building an assignment"))?;
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading the offsets of `{topic}` partition {p}")))?;
        if from_beginning && high > low {
            remaining.push((p, high));
        }
    }
    consumer.assign(&assignment).map_err(KafkaError::client(format!("assigning `{topic}`")))?;
    let mut positions: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let mut seen = 0;
    // Some brokers (Tansu 0.6) also under-report the end in fetch answers, so an end-of-partition
    // event can come early: once every partition has reported its end, the reader still waits
    // for `QUIET` without a message before it believes it.
    const QUIET: Duration = Duration::from_millis(300);
    let mut last_message = std::time::Instant::now();
    let caught_up = |remaining: &Vec<(i32, i64)>, last: std::time::Instant| exit_at_end && remaining.is_empty() && last.elapsed() >= QUIET;
    // The current run of errors: when it began and its latest error (`None`: the last poll that
    // answered was not an error). The limit is checked on empty polls too, so it holds whether or
    // not librdkafka repeats its error while the broker stays down (against the mock cluster it
    // does).
    let mut trouble: Option<(std::time::Instant, rdkafka::error::KafkaError)> = None;
    let outage = |trouble: &Option<(std::time::Instant, rdkafka::error::KafkaError)>| match trouble {
        Some((since, error)) if since.elapsed() >= OUTAGE_LIMIT => Some(KafkaError::Client {
            context: format!("reading `{topic}` (nothing but errors for {} s)", OUTAGE_LIMIT.as_secs()),
            source: error.clone(),
        }),
        _ => None,
    };
    while !stop.load(Ordering::Relaxed) && !caught_up(&remaining, last_message) {
        let Some(result) = consumer.poll(Duration::from_millis(50)) else {
            if let Some(error) = outage(&trouble) {
                return Err(error);
            }
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                trouble = None;
                // Finished once the broker says "end" at or after the end offset listed at start.
                remaining.retain(|(p, high)| !(*p == partition && positions.get(p).is_some_and(|next| next >= high)));
                continue;
            }
            Err(error @ rdkafka::error::KafkaError::MessageConsumption(_)) => {
                tracing::warn!(%error, topic, "kafka read error; librdkafka reconnects, the reader goes on");
                let since = trouble.as_ref().map_or_else(std::time::Instant::now, |(since, _)| *since);
                trouble = Some((since, error));
                if let Some(error) = outage(&trouble) {
                    return Err(error);
                }
                continue;
            }
            Err(error) => return Err(KafkaError::Client { context: format!("reading `{topic}`"), source: error }),
        };
        trouble = None;
        positions.insert(message.partition(), message.offset() + 1);
        seen += 1;
        each(&message);
        last_message = std::time::Instant::now();
    }
    Ok(TopicRead { messages: seen, last_message: (seen > 0).then_some(last_message) })
}
