//! Client settings shared by every Kafka client pitwall makes: brokers plus pass-through
//! librdkafka properties (`-X key=value`, like kcat), so SASL/TLS need no pitwall code.

use std::time::Duration;

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::{ClientConfig, ClientContext};

use super::group::{on_rebalance, Membership};
use super::KafkaError;

/// How long metadata requests may take before an operation fails.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// This process's name in Kafka, `pitwall@<host>/<pid>`: its group members' `client.id`, and the
/// metadata of every offset it commits (so `group describe` can say who committed last).
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("pitwall@{host}/{}", std::process::id())
}

/// Longest time (ms) a fetch waits for data before the broker answers; librdkafka's default is 500.
pub const FETCH_WAIT_MS: &str = "10";
/// How long (ms) a partition whose local queue is over librdkafka's thresholds waits before it
/// is fetched again; librdkafka's default is 1000. A broker that answers one fetch with more than
/// `queued.min.messages` (Tansu does, with ~15,000 records per partition) otherwise leaves a
/// consumer that has drained its queue idle for up to a second: the raw consume+decode ceiling
/// went from ~240k to ~410k msg/s on the benchmark VM with this alone.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Messages a partition's own queue may hold before librdkafka stops fetching it, for readers
/// with a queue per partition ([`KafkaConfig::partition_reader`]).
pub const PARTITION_PREFETCH_MESSAGES: &str = "10000";
/// librdkafka's default prefetch budget for one consumer queue, in KiB, shared by the partitions
/// of a reader with a queue per partition.
const CONSUMER_PREFETCH_KBYTES: usize = 65_536;
/// What a telemetry reader's partition queue may hold instead ([`KafkaConfig::with_partition_prefetch`]):
/// what Kafka's Java consumer buffers per partition (one `max.partition.fetch.bytes`, 1 MiB).
/// A share of the 64 MiB (16 MiB a partition at four) was most of a backlog replay's peak RSS.
pub const TELEMETRY_PARTITION_PREFETCH_KBYTES: usize = 1_024;

/// Consumer context that treats end-of-partition as the news it is, not as an error; a group
/// member's (`kafka/group.rs`) also hands rebalances to its membership.
#[derive(Default)]
pub struct ReaderContext {
    membership: Option<Arc<Membership>>,
}

impl ClientContext for ReaderContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        match error {
            RdKafkaError::PartitionEOF(_) | RdKafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(reason, "end of partition")
            }
            error => tracing::error!(%error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for ReaderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(membership) = &self.membership {
            on_rebalance(membership, rebalance, true, consumer.assignment_lost());
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(membership) = &self.membership {
            on_rebalance(membership, rebalance, false, false);
        }
    }
}

/// The consumer type every pitwall reader uses.
pub type Reader = BaseConsumer<ReaderContext>;

/// What the transport settings favour (`--latency-profile`): pitwall's defaults, or each
/// record's latency at some CPU and throughput cost. User `-X` properties win over both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatencyProfile {
    /// Producers linger 5 ms to fill batches, fetches wait up to [`FETCH_WAIT_MS`], an idle
    /// source polls every 2 ms.
    #[default]
    Throughput,
    /// Producers send at once (`linger.ms=0`), fetches wait at most 1 ms
    /// (`fetch.wait.max.ms=1`), and an idle source polls every 250 µs
    /// ([`LatencyProfile::idle_poll`]). It pays where the broker is cheap per request (the mock
    /// cluster: Kafka alone p50 9 -> 3 ms) and costs where it is not (Tansu on the job's two
    /// cores: Kafka alone p50 20 -> 31-38 ms, from ten times the requests):
    /// `bench-results/2026-12-03/latency-profile.md`.
    Low,
}

impl LatencyProfile {
    /// The producer settings of this profile, over pitwall's defaults.
    fn producer_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            LatencyProfile::Throughput => &[],
            LatencyProfile::Low => &[("linger.ms", "0")],
        }
    }

    /// The consumer settings of this profile, over pitwall's defaults.
    fn consumer_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            LatencyProfile::Throughput => &[],
            LatencyProfile::Low => &[("fetch.wait.max.ms", "1"), ("fetch.queue.backoff.ms", "1")],
        }
    }

    /// How long a source that read nothing waits before it polls its queues again.
    pub fn idle_poll(self) -> Duration {
        match self {
            LatencyProfile::Throughput => Duration::from_millis(2),
            LatencyProfile::Low => Duration::from_micros(250),
        }
    }
}

#[derive(Clone, Default)]
pub struct KafkaConfig {
    pub brokers: String,
    /// Extra librdkafka properties, applied last.
    pub properties: Vec<(String, String)>,
    /// Settings applied over pitwall's defaults and under `properties`.
    pub profile: LatencyProfile,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig { brokers: brokers.into(), properties: Vec::new(), profile: LatencyProfile::default() }
    }

    /// A client config with the brokers, `defaults`, then the user's properties. Every client
    /// sends small requests at once (`socket.nagle.disable=true`; librdkafka leaves Nagle's
    /// algorithm on, which holds a small request for the peer's delayed ack): on Tansu it cut the
    /// p99 of Kafka alone from 41-45 to 32-33 ms at 10,000 msg/s and of ingest-to-alert from
    /// 41-42 to 31-33 ms, throughput unchanged (`bench-results/2026-12-03/latency-profile.md`).
    pub fn client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("socket.nagle.disable", "true");
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// A producer's config: one request in flight per broker connection, then `defaults`, then the
    /// user's properties. librdkafka keeps a partition's messages in order across a retry (after a
    /// broker error or timeout) only with one request in flight or with idempotence, and
    /// idempotence turns fatal on a broker that forgets producer state on restart (Tansu 0.6
    /// does). Out of order, a driver's telemetry would reach the job as late records and a video's
    /// frames as gaps. Against Tansu it cost no measurable throughput and shortened the latency
    /// tail (`bench-results/2026-12-01/ab-inflight.md`); `-X
    /// max.in.flight.requests.per.connection=N` trades the order for more requests in flight.
    pub fn producer(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut settings = vec![("max.in.flight.requests.per.connection", "1")];
        settings.extend_from_slice(defaults);
        settings.extend_from_slice(self.profile.producer_settings());
        self.client(&settings)
    }

    /// A consumer that is never subscribed: used for metadata, watermarks and assigned reads.
    /// End-of-partition events are on: readers use them to know they have caught up. Fetches
    /// wait at most [`FETCH_WAIT_MS`] for data, for latency (and because some brokers hold a
    /// fetch for the whole wait even when data is ready), and a full local queue is re-checked
    /// after [`FETCH_QUEUE_BACKOFF_MS`].
    pub fn plain_consumer(&self, group: &str) -> Result<Reader, KafkaError> {
        self.create_reader(self.reader_config(group, &[]))
    }

    /// A [`KafkaConfig::plain_consumer`] for a reader that polls each of its `partitions`
    /// from a queue of its own (`split_partition_queue`). librdkafka's prefetch limits then hold
    /// per partition, not per consumer: a partition stops being fetched at
    /// [`PARTITION_PREFETCH_MESSAGES`] queued (librdkafka's default, 100,000, would let each
    /// partition buffer ~45 MB of telemetry), or at its share of librdkafka's default byte
    /// budget for a whole consumer (64 MiB), whichever comes first (video frames are ~0.7 MB).
    pub fn partition_reader(&self, group: &str, partitions: usize) -> Result<Reader, KafkaError> {
        self.create_reader(self.partition_reader_config(group, partitions))
    }

    /// A consumer that joins `group` (subscribe, `kafka/group.rs`) and reads what it is
    /// assigned from a queue per partition, with a [`KafkaConfig::partition_reader`]'s
    /// prefetch limits (budgeted for 8 partitions) and the group settings `extra`.
    pub(crate) fn group_member(&self, group: &str, extra: &[(&str, &str)], membership: Arc<Membership>) -> Result<Reader, KafkaError> {
        let mut config = self.partition_reader_config(group, 8);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
            .create_with_context(ReaderContext { membership: Some(membership) })
            .map_err(KafkaError::client(format!("creating a group member for {}", self.brokers)))
    }

    /// This config with every partition queue of its readers capped at `kbytes` KiB of
    /// prefetched messages instead of a share of the consumer's 64 MiB, unless `-X
    /// queued.max.messages.kbytes` says otherwise. librdkafka always fetches at least one
    /// message, so a larger one still gets through; readers of large messages (video frames)
    /// keep the share: capped at 1 MiB, `bench video` fell from 231 to 137 frames/s.
    pub fn with_partition_prefetch(mut self, kbytes: usize) -> KafkaConfig {
        if !self.properties.iter().any(|(key, _)| key == "queued.max.messages.kbytes") {
            self.properties.push(("queued.max.messages.kbytes".into(), kbytes.max(1).to_string()));
        }
        self
    }

    fn partition_reader_config(&self, group: &str, partitions: usize) -> ClientConfig {
        let kbytes = (CONSUMER_PREFETCH_KBYTES / partitions.max(1)).max(1_024).to_string();
        self.reader_config(group, &[("queued.min.messages", PARTITION_PREFETCH_MESSAGES), ("queued.max.messages.kbytes", &kbytes)])
    }

    fn create_reader(&self, config: ClientConfig) -> Result<Reader, KafkaError> {
        config.create_with_context(ReaderContext::default()).map_err(KafkaError::client(format!("creating a consumer for {}", self.brokers)))
    }

    pub(crate) fn reader_config(&self, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
        let mut settings = vec![
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
            ("fetch.wait.max.ms", FETCH_WAIT_MS),
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
        ];
        settings.extend_from_slice(extra);
        settings.extend_from_slice(self.profile.consumer_settings());
        self.client(&settings)
    }

    /// Number of partitions of `topic`.
    pub fn partition_count(&self, consumer: &Reader, topic: &str) -> Result<i32, KafkaError> {
        let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|error| {
            serve_events(consumer);
            KafkaError::Client { context: format!("fetching metadata of `{topic}` from {}", self.brokers), source: error }
        })?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
            _ => Err(KafkaError::NoSuchTopic { topic: topic.to_string(), brokers: self.brokers.clone() }),
        }
    }
}

/// Serves what librdkafka queued for `consumer` (its log lines, its error events), which only a
/// poll delivers: a client that fails before it was ever polled (a dead broker at start) would
/// otherwise be dropped with them, and the job's error would come without librdkafka's reasons
/// (it did in about one run of four).
///
/// A poll with a zero timeout is not enough: rust-rdkafka answers `None` both for an empty queue
/// and for a queue whose first event was a log line it served, so a zero-timeout loop stops after
/// one line (CI once printed the first line of a debug dump and lost the rest). A poll with a
/// timeout serves log lines until the timeout passes, and returns early only with an error event,
/// so this polls until a whole [`EVENT_DRAIN`] passes with nothing but log lines, or for
/// [`EVENT_DRAIN_MAX`] at most (a dead broker raises a new error event on every reconnect).
pub fn serve_events(consumer: &Reader) {
    let start = std::time::Instant::now();
    while start.elapsed() < EVENT_DRAIN_MAX {
        if consumer.poll(EVENT_DRAIN).is_none() {
            break;
        }
    }
}

/// How long [`serve_events`] waits for another event before it calls the queue drained.
const EVENT_DRAIN: Duration = Duration::from_millis(100);
/// The longest [`serve_events`] serves a queue that keeps raising errors.
const EVENT_DRAIN_MAX: Duration = Duration::from_secs(1);

/// Whether a librdkafka property holds a secret (passwords, keys, tokens, client secrets).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", ".key.pem", "keystore", "sasl.jaas", "ssl.key"].iter().any(|s| key.contains(s))
}

/// Properties with secret values replaced, for logs and errors.
pub fn redacted(properties: &[(String, String)]) -> Vec<(String, String)> {
    properties.iter().map(|(k, v)| (k.clone(), if is_secret_property(k) { "[redacted]".into() } else { v.clone() })).collect()
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig").field("brokers", &self.brokers).field("properties", &redacted(&self.properties)).finish()
    }
}

/// Parses `key=value` (the `-X` flag).
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_latency_profile_overrides_pitwalls_defaults_and_yields_to_the_users() {
        let low = KafkaConfig { profile: LatencyProfile::Low, ..KafkaConfig::new("b:9092") };
        assert_eq!(low.producer(&[("linger.ms", "5")]).get("linger.ms"), Some("0"));
        assert_eq!(low.reader_config("g", &[]).get("fetch.wait.max.ms"), Some("1"));
        let default = KafkaConfig::new("b:9092");
        assert_eq!(default.producer(&[("linger.ms", "5")]).get("linger.ms"), Some("5"));
        assert_eq!(default.producer(&[]).get("socket.nagle.disable"), Some("true"), "every client, whatever the profile");
        assert_eq!(default.reader_config("g", &[]).get("socket.nagle.disable"), Some("true"));
        assert_eq!(default.reader_config("g", &[]).get("fetch.wait.max.ms"), Some(FETCH_WAIT_MS));
        let user = KafkaConfig { properties: vec![("linger.ms".into(), "2".into())], ..low };
        assert_eq!(user.producer(&[("linger.ms", "5")]).get("linger.ms"), Some("2"), "-X wins");
    }

    #[test]
    fn producers_keep_one_request_in_flight_unless_the_user_says_otherwise() {
        let plain = KafkaConfig::new("127.0.0.1:9092").producer(&[("linger.ms", "5")]);
        assert_eq!(plain.get("max.in.flight.requests.per.connection"), Some("1"));
        assert_eq!(plain.get("linger.ms"), Some("5"));
        let user = KafkaConfig { properties: vec![("max.in.flight.requests.per.connection".into(), "5".into())], ..KafkaConfig::new("b:9092") };
        assert_eq!(user.producer(&[]).get("max.in.flight.requests.per.connection"), Some("5"));
    }

    #[test]
    fn a_partition_reader_shares_one_consumer_prefetch_budget_among_its_partitions() {
        let kafka = KafkaConfig::new("b:9092");
        let kbytes = |n| kafka.partition_reader_config("g", n).get("queued.max.messages.kbytes").map(String::from);
        assert_eq!(kbytes(1).as_deref(), Some("65536"));
        assert_eq!(kbytes(4).as_deref(), Some("16384"), "four partitions hold what one consumer queue did");
        assert_eq!(kbytes(0).as_deref(), Some("65536"));
        assert_eq!(kbytes(500).as_deref(), Some("1024"), "never below 1 MiB: one large message must fit");
        let config = kafka.partition_reader_config("g", 4);
        assert_eq!(config.get("queued.min.messages"), Some(PARTITION_PREFETCH_MESSAGES));
        assert_eq!(config.get("enable.partition.eof"), Some("true"));
        let user = KafkaConfig { properties: vec![("queued.min.messages".into(), "500".into())], ..KafkaConfig::new("b:9092") };
        assert_eq!(user.partition_reader_config("g", 4).get("queued.min.messages"), Some("500"), "-X wins");
    }

    #[test]
    fn a_telemetry_reader_prefetches_a_mebibyte_a_partition_unless_told_otherwise() {
        let capped = KafkaConfig::new("b:9092").with_partition_prefetch(TELEMETRY_PARTITION_PREFETCH_KBYTES);
        for partitions in [1, 4, 8] {
            assert_eq!(capped.partition_reader_config("g", partitions).get("queued.max.messages.kbytes"), Some("1024"));
        }
        let user = KafkaConfig { properties: vec![("queued.max.messages.kbytes".into(), "4096".into())], ..KafkaConfig::new("b:9092") };
        let user = user.with_partition_prefetch(TELEMETRY_PARTITION_PREFETCH_KBYTES);
        assert_eq!(user.partition_reader_config("g", 4).get("queued.max.messages.kbytes"), Some("4096"), "-X wins");
        assert_eq!(user.properties.len(), 1);
    }

    #[test]
    fn debug_output_redacts_secret_properties_only() {
        let config = KafkaConfig {
            brokers: "b:9092".into(),
            properties: vec![
                ("sasl.password".into(), "hunter2".into()),
                ("ssl.key.password".into(), "k3y".into()),
                ("sasl.oauthbearer.client.secret".into(), "c1ient".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ],
            ..KafkaConfig::new("b:9092")
        };
        let text = format!("{config:?}");
        for secret in ["hunter2", "k3y", "c1ient"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("SASL_SSL") && text.contains("[redacted]"), "{text}");
    }
}
