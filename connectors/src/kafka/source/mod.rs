//! The Kafka source of a timely dataflow.
//!
//! Every worker reads either its share of its process's group lease (`kafka/group.rs`: the
//! instances of a job share the partitions through Kafka's group protocol) or, with static
//! assignment, the partitions that `PartitionOwner` gives it with `assign`, starting from the
//! offsets committed to the consumer group. Each poll batch is emitted at the current capability, the
//! watermark (`watermark.rs`). Records whose event time is already behind their partition's
//! bound are late: they are emitted as [`LateRecord`]s, never dropped; messages that do not
//! decode are dead letters with the decoder's reason.
//!
//! With exit-at-end, a partition is finished at the first end-of-partition event once its
//! position has reached the end offset listed at start: listed offsets alone are not trusted
//! (some Kafka-protocol brokers under-report them), the fetch position is.
//!
//! Offsets are committed after the records they cover are fully processed, each commit preceded
//! by its delivered-before mark (`commit.rs`). This is at-least-once: a crash replays from the
//! last commit, and a restarted job reads the marks back ([`SourceHandle::delivered_before`]) to
//! drop the outputs it re-derives that had been delivered.
//!
//! | file | what it owns |
//! | --- | --- |
//! | `mod.rs` | configuration, what the source emits, the operator and its read loop, the handle |
//! | `partition.rs` | one partition's read state, opening the assignment, the read-ahead decision |
//! | `watermark.rs` | the watermark rule, the board of every worker's watermark, its broadcast |
//! | `commit.rs` | commits and delivered-before marks, checkpoints, where a restart resumes |
//!
//! This file is about 500 lines: the operator, its read loop and the handle all work on
//! `SourceInner`'s private state, which stays private to this module that way.

mod commit;
mod partition;
mod watermark;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_dataflows::anomalies::DriverHold;
use pitwall_dataflows::records::{DeadLetter, EventTime, LateRecord, RecordKey, SourcePosition};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, OkErr};
use timely::dataflow::{Scope, Stream};

use self::commit::Committer;
pub(crate) use self::commit::{marks_group, read_marks};
use self::partition::{open_leased, open_partitions, owned_partitions, read_ahead_changes, PartitionState};
use self::watermark::{next_watermark, WatermarkStep};
pub use self::watermark::{BoardShare, TopicBoards, WatermarkBoard};
use super::config::{Reader, ReaderContext};
use super::group::{share, Lease};
use super::health::SourceHealth;
use super::metrics::SourceMetrics;
use super::{KafkaConfig, KafkaError};

/// Most messages one activation reads unless configured: each poll batch is a dataflow step, and
/// each step pays timely's progress bookkeeping; 8,192 was ~8% faster than 4,096 reading a
/// backlog at `-w 2`, more gained nothing (`bench-results/2026-12-01/ab-poll-batch.md`).
pub const DEFAULT_MAX_BATCH: usize = 8_192;

/// Event time a partition may read ahead of the slowest before it is paused, unless configured
/// (see [`read_ahead_changes`]).
pub const DEFAULT_MAX_READ_AHEAD_MS: u64 = 600_000;

/// The consumer group a source commits to unless configured (`--group`).
pub const DEFAULT_GROUP: &str = "pitwall";
/// Event time a record may trail its partition's newest record without being late, unless
/// configured (`--allowed-lateness-ms`).
pub const DEFAULT_ALLOWED_LATENESS_MS: u64 = 500;
/// How long a partition the broker reports caught up may stay silent before it stops holding the
/// watermark back, unless configured (`--eof-idle-ms`).
pub const DEFAULT_EOF_GRACE_MS: u64 = 200;
/// How long any partition may stay silent before it stops holding the watermark back, unless
/// configured (`--idle-timeout-ms`).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 3_000;
/// How far (ms of event time) a record may jump ahead of its partition's newest record before it
/// is dead-lettered as implausible, unless configured (`--max-event-time-jump-ms`): an hour, longer
/// than any stoppage in a session.
pub const DEFAULT_MAX_EVENT_TIME_JUMP_MS: u64 = 3_600_000;
/// How often offsets and marks are committed unless configured (`--commit-interval-ms`).
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1_000;

/// Most messages read from one partition before the next partition's turn.
const PARTITION_CHUNK: usize = 512;

/// How a source reads.
#[derive(Clone)]
pub struct SourceConfig {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub group: String,
    /// Event time a record may lag the newest record of its partition without being late.
    pub allowed_lateness_ms: u64,
    /// A partition the broker reports caught up (end of partition) that then stays silent this
    /// long stops holding the watermark back.
    pub eof_grace: Duration,
    /// Fallback: a partition silent this long stops holding the watermark back, whatever the broker says.
    pub idle_timeout: Duration,
    /// Read up to the end offsets seen at start, then finish.
    pub exit_at_end: bool,
    /// Most messages read per activation.
    pub max_batch: usize,
    /// How often offsets are committed (and gauges refreshed) while running.
    pub commit_interval: Duration,
    /// Where to count what the source does, if anywhere.
    pub metrics: Option<SourceMetrics>,
    /// Shared by the sources of one topic in this process: a worker whose partitions are idle
    /// and have never carried a record follows the other workers' watermarks instead of
    /// holding the frontier at 0.
    pub board: Option<WatermarkBoard>,
    /// A record whose event time is more than this ahead of its partition's newest record is a
    /// dead letter, not a record (see `PartitionState::implausible_jump`); `None` accepts any.
    pub max_event_time_jump_ms: Option<u64>,
    /// Event time a partition may read ahead of the topic's slowest active partition (every
    /// worker's, through `board`) before its reading is paused; `None` never pauses. See
    /// [`read_ahead_changes`].
    pub max_read_ahead_ms: Option<u64>,
    /// Group membership (`kafka/group.rs`): read this worker's share of the lease's partitions
    /// through the member, and stop reading once the lease is revoked. `None`: static
    /// assignment, partition `p` read by worker `p % workers`.
    pub lease: Option<Arc<Lease>>,
}

impl SourceConfig {
    pub fn new(kafka: KafkaConfig, topic: impl Into<String>) -> SourceConfig {
        SourceConfig {
            kafka,
            topic: topic.into(),
            group: DEFAULT_GROUP.into(),
            allowed_lateness_ms: DEFAULT_ALLOWED_LATENESS_MS,
            eof_grace: Duration::from_millis(DEFAULT_EOF_GRACE_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            exit_at_end: false,
            max_batch: DEFAULT_MAX_BATCH,
            commit_interval: Duration::from_millis(DEFAULT_COMMIT_INTERVAL_MS),
            metrics: None,
            board: None,
            max_read_ahead_ms: None,
            max_event_time_jump_ms: None,
            lease: None,
        }
    }
}

/// One message, decoded: its event time and record, or why it was refused (the reason a dead
/// letter carries is the error's `Display`).
pub type Decoded<R, E> = Result<(EventTime, R), E>;

/// What the source emits: a record, a record too late for the watermark, or a dead letter.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum SourceEvent<R> {
    Record(R),
    Late(LateRecord),
    Dead(DeadLetter),
}

/// The stream a source emits.
pub type SourceStream<'s, R> = Stream<'s, EventTime, Vec<SourceEvent<R>>>;

/// A source's events split three ways.
pub struct SplitEvents<'s, R> {
    pub records: Stream<'s, EventTime, Vec<R>>,
    pub late: Stream<'s, EventTime, Vec<LateRecord>>,
    pub dead: Stream<'s, EventTime, Vec<DeadLetter>>,
}

/// Splits what a source emits into records, late records and dead letters.
pub fn split_events<R: Clone + 'static>(events: SourceStream<'_, R>) -> SplitEvents<'_, R> {
    // A transient split of each batch: the large `Err` side is moved once, never stored.
    #[allow(clippy::result_large_err)]
    let (records, rejected) = events.ok_err::<Vec<R>, _, Vec<SourceEvent<R>>, _, _>(|event| match event {
        SourceEvent::Record(record) => Ok(record),
        other => Err(other),
    });
    let (late, dead) = rejected.ok_err::<Vec<LateRecord>, _, Vec<DeadLetter>, _, _>(|event| match event {
        SourceEvent::Late(late) => Ok(late),
        SourceEvent::Dead(dead) => Err(dead),
        SourceEvent::Record(_) => unreachable!("records were split off above"),
    });
    SplitEvents { records, late, dead }
}

/// Counters a source keeps, readable after the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub messages: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub late: u64,
    pub bytes: u64,
    pub commits: u64,
    /// Episodes in which the broker stopped answering for a partition and came back.
    pub stalls: u64,
    /// Offsets the broker never delivered: the next message came after a gap. Normal on
    /// compacted or transactional topics; anywhere else, records were lost upstream or by the
    /// broker (Tansu 0.6 skips the rest of a batch when a fetch starts inside it).
    pub skipped_offsets: u64,
}

impl SourceStats {
    fn count<R>(&mut self, event: &SourceEvent<R>, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
        match event {
            SourceEvent::Record(_) => self.records += 1,
            SourceEvent::Late(_) => self.late += 1,
            SourceEvent::Dead(_) => self.dead_letters += 1,
        }
    }
}

/// One worker's source: its clients, partitions and counters, shared by the operator and the handle.
struct SourceInner {
    consumer: Arc<Reader>,
    /// Each partition's own message queue, in the order of `partitions`: a partition that read
    /// ahead is left unpolled while the others are read.
    queues: Vec<PartitionQueue<ReaderContext>>,
    /// Commits offsets and, first, their delivered-before marks.
    committer: Committer,
    /// Every partition's delivered-before mark as found at start (see `commit::read_marks`).
    delivered_before: Vec<Option<EventTime>>,
    health: SourceHealth,
    topic: String,
    partitions: Vec<PartitionState>,
    stats: SourceStats,
    /// Whether to poll the consumer's own queue: a group member's is its membership thread's.
    poll_main: bool,
    /// The lease read under group membership.
    lease: Option<Arc<Lease>>,
    /// The probe after the sinks (what `SourceHandle::commit_delivered` commits by).
    probe: ProbeHandle<EventTime>,
    /// The board of this source's topic (or lease) in this process, with where each key was read.
    board: Option<WatermarkBoard>,
    /// Keys whose outputs still depend on records since a time the probe no longer holds (see
    /// [`SourceHandle::key_holds`]): no commit starts their replay at or after it.
    key_holds: KeyHolds,
}

/// Per key (a driver), the event time its replay must start before, as the dataflow announced
/// it (`pitwall_dataflows::anomalies::DriverHold`); read by the commits of the same worker.
pub type KeyHolds = Rc<RefCell<HashMap<Box<str>, EventTime>>>;

impl Drop for SourceInner {
    fn drop(&mut self) {
        self.health.stop();
    }
}

impl SourceInner {
    /// Pauses the partitions that read too far ahead of `slowest` and resumes those it caught
    /// up with (see [`read_ahead_changes`]). Pausing is not polling the partition's queue:
    /// librdkafka stops fetching it once that queue holds `queued.min.messages`, and nothing is
    /// fetched twice (its own pause drops what was prefetched and fetches it again, from inside
    /// a batch, which Tansu 0.6 answers from the next batch on).
    fn align_reading(&mut self, slowest: Option<EventTime>, ahead_ms: u64, lateness_ms: u64) {
        let (pause, resume) = read_ahead_changes(&self.partitions, slowest, ahead_ms, lateness_ms);
        for state in &mut self.partitions {
            if pause.contains(&state.partition) {
                state.paused = true;
            } else if resume.contains(&state.partition) {
                state.paused = false;
                // Nothing was read while paused: the idle clock starts again now.
                state.last_message = Instant::now();
            }
        }
        if !pause.is_empty() || !resume.is_empty() {
            tracing::debug!(topic = %self.topic, ?pause, ?resume, ?slowest, "read-ahead alignment");
        }
    }

    /// Consumer lag, stalled state and watermark lag of every partition, for the metrics.
    fn refresh_gauges(&self, watermark: EventTime) {
        let health = self.health.partitions();
        for state in &self.partitions {
            let Some(metrics) = &state.metrics else { continue };
            let Some(health) = health.iter().find(|h| h.partition == state.partition) else { continue };
            if let (Some(high), Some(committed)) = (health.high_watermark, state.committed) {
                metrics.consumer_lag.set((high - committed).max(0));
            }
            metrics.stalled.set(i64::from(health.stalled.is_some()));
            metrics.watermark_lag_ms.set(state.max_event_time.map_or(0, |m| m.saturating_sub(watermark)) as i64);
            metrics.watermark_ms.set(watermark as i64);
        }
    }

    /// Commits what `passed` says is delivered (see `commit::Committer::commit_passed`).
    fn commit_passed(&mut self, passed: impl Fn(EventTime) -> bool, delivered: Option<EventTime>, mode: CommitMode) -> Result<(), KafkaError> {
        let SourceInner { consumer, committer, partitions, stats, key_holds, .. } = self;
        let holds = key_holds.borrow();
        if committer.commit_passed(consumer, partitions, passed, delivered, mode, |key| holds.get(key).copied())? {
            stats.commits += 1;
        }
        Ok(())
    }

    /// Reads what is waiting, up to `max_batch` messages, into `batch`: first anything on the
    /// consumer's own queue (errors, callbacks; messages and end-of-partition events are on their
    /// partitions' queues, split right after the assignment, but one found here counts all the
    /// same), then round robin over
    /// the partitions that are neither finished nor paused, [`PARTITION_CHUNK`] of each at a
    /// time, starting from a different partition each activation (`turn`). Returns how many
    /// messages were taken from the partitions' queues.
    fn read_batch<R: RecordKey, E: Display, D>(
        &mut self,
        reading: &mut Reading<'_, D>,
        max_batch: usize,
        turn: usize,
        batch: &mut Vec<SourceEvent<R>>,
    ) -> usize
    where
        D: FnMut(SourcePosition, Option<&[u8]>, &[u8]) -> Decoded<R, E>,
    {
        let SourceInner { consumer, queues, partitions, stats, topic, poll_main, .. } = self;
        let mut read = 0;
        while let Some(result) = poll_main.then(|| consumer.poll(Duration::ZERO)).flatten() {
            match result {
                Ok(message) => match partitions.iter_mut().find(|s| s.partition == message.partition()) {
                    Some(state) => batch.push(reading.ingest(state, stats, &message)),
                    None => tracing::error!(topic = %topic, partition = message.partition(), "a message of a partition this worker does not own"),
                },
                // Like a message, an end-of-partition event found here counts all the same.
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    if let Some(state) = partitions.iter_mut().find(|s| s.partition == p) {
                        state.eof_since.get_or_insert_with(Instant::now);
                    }
                }
                Err(error) => tracing::warn!(%error, topic = %topic, "kafka read error"),
            }
        }
        let mut progressed = true;
        while progressed && read < max_batch {
            progressed = false;
            for k in 0..partitions.len() {
                let i = (turn + k) % partitions.len();
                let (state, queue) = (&mut partitions[i], &queues[i]);
                let mut taken = 0;
                while !state.paused && !state.done() && taken < PARTITION_CHUNK && read < max_batch {
                    let Some(result) = queue.poll(Duration::ZERO) else {
                        break;
                    };
                    (taken, read, progressed) = (taken + 1, read + 1, true);
                    match result {
                        Ok(message) => batch.push(reading.ingest(state, stats, &message)),
                        Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                            state.eof_since.get_or_insert_with(Instant::now);
                        }
                        Err(error) => tracing::warn!(%error, topic = %topic, partition = state.partition, "kafka read error"),
                    }
                }
            }
        }
        read
    }
}

/// What one activation reads with: the decoder, and the bounds and clock it judges messages by.
struct Reading<'a, D> {
    topic: &'a str,
    lateness_ms: u64,
    /// See [`SourceConfig::max_event_time_jump_ms`].
    max_jump_ms: Option<u64>,
    /// The capability's time: late records and dead letters are emitted (and checkpointed) at it.
    watermark: EventTime,
    /// One clock read per activation: a batch is read within microseconds.
    now: Instant,
    decode: &'a mut D,
    /// Where each record key's partitions are noted for this process (`SourceHandle::marks_by_key`).
    board: Option<&'a WatermarkBoard>,
}

impl<D> Reading<'_, D> {
    /// Decodes one message of `state`'s partition into what the source emits, counting it and
    /// moving the partition's progress (newest event time, checkpoint, key trail) along.
    fn ingest<R: RecordKey, E: Display>(
        &mut self,
        state: &mut PartitionState,
        stats: &mut SourceStats,
        message: &BorrowedMessage<'_>,
    ) -> SourceEvent<R>
    where
        D: FnMut(SourcePosition, Option<&[u8]>, &[u8]) -> Decoded<R, E>,
    {
        let at = SourcePosition { partition: message.partition(), offset: message.offset() };
        let (key, payload) = (message.key(), message.payload().unwrap_or_default());
        if let Some(expected) = state.next_offset.filter(|n| at.offset > *n) {
            stats.skipped_offsets += (at.offset - expected) as u64;
            tracing::warn!(
                topic = %self.topic,
                partition = at.partition,
                from = expected,
                to = at.offset - 1,
                "the broker skipped offsets: expected on a compacted or transactional topic, otherwise records were lost before pitwall read them"
            );
        }
        let bound = state.candidate(self.lateness_ms).map_or(self.watermark, |c| self.watermark.max(c));
        let decoded = match (self.decode)(at, key, payload) {
            Ok((time, record)) => match state.implausible_jump(time, self.max_jump_ms) {
                Some(reason) => Err(reason),
                None => Ok((time, record)),
            },
            Err(error) => Err(error.to_string()),
        };
        let (event, record_time) = classify(decoded, bound, self.topic, at, key, payload);
        stats.count(&event, payload.len());
        if let Some(metrics) = &state.metrics {
            metrics.count(&event, payload.len());
        }
        // Late records and dead letters are emitted at the watermark: that is what their
        // checkpoint covers (the partition's bound may be ahead of it).
        let checkpoint_time = match record_time {
            Some(time) => {
                state.max_event_time = Some(state.max_event_time.map_or(time, |m| m.max(time)));
                if let SourceEvent::Record(record) = &event {
                    // By the record's own key (its driver, its video), not the Kafka key: a
                    // producer may send it unkeyed or partition it by another hash.
                    let key = record.record_key();
                    if state.keys.read(key, time, at.offset) {
                        if let Some(board) = self.board {
                            board.note_key(key, at.partition);
                        }
                    }
                }
                time
            }
            None => self.watermark,
        };
        state.read(at.offset, checkpoint_time, self.now);
        event
    }
}

/// After the dataflow: commits what is left and reports the counters.
#[derive(Clone)]
pub struct SourceHandle {
    inner: Rc<RefCell<SourceInner>>,
}

impl SourceHandle {
    /// Commits every offset read. Call once the probe after the sinks is done.
    pub fn commit_all(&self) -> Result<(), KafkaError> {
        self.inner.borrow_mut().commit_passed(|_| true, None, CommitMode::Sync)
    }

    /// Commits, synchronously, what the probe after the sinks has passed, with its mark (all of
    /// it, as [`SourceHandle::commit_all`], once the probe is done): what a partition's next
    /// owner resumes from after a hand-over.
    pub fn commit_delivered(&self) -> Result<(), KafkaError> {
        let mut inner = self.inner.borrow_mut();
        let probe = inner.probe.clone();
        match probe.with_frontier(|f| f.first().copied()) {
            Some(delivered) => inner.commit_passed(|time| !probe.less_equal(&time), Some(delivered), CommitMode::Sync),
            None => inner.commit_passed(|_| true, None, CommitMode::Sync),
        }
    }

    /// The keys whose replay must start before a time the probe no longer holds (a condition
    /// that outlasts the anomaly detector's hold; `pitwall_dataflows::anomalies::DriverHold`).
    /// The wiring keeps it up to date from the dataflow, on this worker, before the probe passes
    /// the announcement; each commit pulls its offset back so such a key's replay starts at one
    /// of its records older than its hold (`commit.rs`), so only the partitions holding such a
    /// key stop committing past it, and the marks move on.
    pub fn key_holds(&self) -> KeyHolds {
        self.inner.borrow().key_holds.clone()
    }

    /// Per partition of the topic (by index): the delivered-before mark found at start, before
    /// which the outputs of the previous run were all delivered (`None`: no mark).
    pub fn delivered_before(&self) -> Vec<Option<EventTime>> {
        self.inner.borrow().delivered_before.clone()
    }

    /// The delivered-before mark of the outputs keyed `key` (a driver, a video id; see
    /// [`mark_for`]), by the partitions its records really came from, whatever partitioned them
    /// (`None` for every key after a clean stop or in a fresh group: nothing to drop).
    pub fn marks_by_key(&self) -> impl Fn(&str) -> Option<EventTime> + Clone + 'static {
        let inner = self.inner.borrow();
        let marks: Rc<[Option<EventTime>]> = inner.delivered_before.clone().into();
        let any = marks.iter().any(Option::is_some);
        // Under group membership, where this process read each key; static: any partition.
        let read_from = inner.lease.as_ref().and(inner.board.clone());
        move |key| {
            if !any {
                return None;
            }
            match &read_from {
                None => mark_for(&marks, None),
                Some(board) => mark_for(&marks, Some(&board.key_partitions(key))),
            }
        }
    }

    pub fn stats(&self) -> SourceStats {
        let inner = self.inner.borrow();
        SourceStats { stalls: inner.health.episodes(), ..inner.stats.clone() }
    }

    /// Per-partition health (stalled or not, with the cause).
    pub fn health(&self) -> SourceHealth {
        self.inner.borrow().health.clone()
    }

    /// The partitions this worker reads.
    pub fn partitions(&self) -> Vec<i32> {
        self.inner.borrow().partitions.iter().map(|p| p.partition).collect()
    }
}

/// Builds the source for this worker. `decode` turns a message into an event time and record.
pub fn kafka_source<'s, R, E, D>(
    scope: Scope<'s, EventTime>,
    config: SourceConfig,
    mut decode: D,
    probe: ProbeHandle<EventTime>,
    shutdown: Arc<AtomicBool>,
) -> Result<(SourceStream<'s, R>, SourceHandle), KafkaError>
where
    R: Clone + RecordKey + 'static,
    E: Display,
    D: FnMut(SourcePosition, Option<&[u8]>, &[u8]) -> Decoded<R, E> + 'static,
{
    let worker_index = scope.index();
    // How long a source that read nothing waits before it polls again (the profile's).
    let idle_poll = config.kafka.profile.idle_poll();
    // The marks' consumer first: the reader's prefetch is sized by how many partitions it owns.
    let marks = config.kafka.plain_consumer(&marks_group(&config.group))?;
    let count = config.kafka.partition_count(&marks, &config.topic)?;
    let topic = config.topic.clone();
    // Read once per worker: the floors of this worker's own marks, and (through the handle)
    // every partition's mark for the operators that drop re-derived outputs. A partition added
    // since the count was read has no mark yet: it is read past the end of the list.
    let (consumer, owned, partitions, queues, delivered_before) = match &config.lease {
        None => {
            let owned = owned_partitions(worker_index, scope.peers(), count);
            let consumer = Arc::new(config.kafka.partition_reader(&config.group, owned.len())?);
            let delivered_before = read_marks(&marks, &topic, count, &config.group)?;
            let (partitions, queues) = open_partitions(&consumer, &config, &owned, &delivered_before)?;
            (consumer, owned, partitions, queues, delivered_before)
        }
        Some(lease) => {
            let owned = share(&lease.partitions, worker_index, scope.peers());
            let known = lease.partitions.iter().copied().max().map_or(count, |p| count.max(p + 1));
            let delivered_before = read_marks(&marks, &topic, known, &config.group)?;
            let (partitions, queues) = open_leased(lease, &marks, &config, &owned, &delivered_before)?;
            (lease.consumer.clone(), owned, partitions, queues, delivered_before)
        }
    };
    let generation = config.lease.as_ref().map(|l| l.generation);
    tracing::info!(worker = worker_index, topic = %topic, partitions = ?owned, ?generation, "kafka source assigned");

    let health = SourceHealth::start(&config.kafka, &topic, &owned);
    let inner = Rc::new(RefCell::new(SourceInner {
        consumer,
        queues,
        committer: Committer { marks, topic: topic.clone(), owner: super::config::instance_id() },
        delivered_before,
        health,
        topic: topic.clone(),
        partitions,
        stats: SourceStats::default(),
        poll_main: config.lease.is_none(),
        lease: config.lease.clone(),
        probe: probe.clone(),
        board: config.board.clone(),
        key_holds: KeyHolds::default(),
    }));
    let handle = SourceHandle { inner: inner.clone() };
    let stream = source(scope, "KafkaSource", move |initial: Capability<EventTime>, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(initial);
        let mut last_commit = Instant::now();
        let mut batch: Vec<SourceEvent<R>> = Vec::new();
        let mut turn = 0usize;
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            let mut inner = inner.borrow_mut();
            let stopping = shutdown.load(Ordering::Relaxed);
            // A revoked lease: nothing more is read, and the watermark stays where it is (no
            // window closes for want of records that the partition's next owner reads); the job
            // commits what was delivered and drops this dataflow (see `kafka/group.rs`).
            let revoked = inner.lease.as_ref().is_some_and(|l| !l.valid());
            let mut read = 0;
            if !stopping && !revoked {
                turn = turn.wrapping_add(1);
                let mut reading = Reading {
                    topic: &topic,
                    lateness_ms: config.allowed_lateness_ms,
                    max_jump_ms: config.max_event_time_jump_ms,
                    watermark: *cap.time(),
                    now: Instant::now(),
                    decode: &mut decode,
                    board: config.board.as_ref(),
                };
                read = inner.read_batch(&mut reading, config.max_batch, turn, &mut batch);
            }
            if !batch.is_empty() {
                output.session(&*cap).give_container(&mut batch);
            }
            let next = if stopping {
                WatermarkStep::Finished
            } else if revoked {
                WatermarkStep::To(*cap.time())
            } else {
                next_watermark(&inner.partitions, &config, worker_index, *cap.time())
            };
            // Not once the lease is revoked: the hand-over commits, and after it the offsets are
            // the next owner's to commit.
            if !revoked && last_commit.elapsed() >= config.commit_interval {
                last_commit = Instant::now();
                inner.refresh_gauges(*cap.time());
                let delivered = probe.with_frontier(|f| f.first().copied());
                if let Err(error) = inner.commit_passed(|time| !probe.less_equal(&time), delivered, CommitMode::Async) {
                    tracing::warn!(%error, "offset commit failed; will retry");
                }
            }
            if let (Some(ahead), Some(board), false) = (config.max_read_ahead_ms, &config.board, stopping || revoked) {
                inner.align_reading(board.slowest_active(), ahead, config.allowed_lateness_ms);
            }
            match next {
                WatermarkStep::Finished => capability = None,
                WatermarkStep::To(time) => {
                    if time > *cap.time() {
                        cap.downgrade(&time);
                    }
                    if read > 0 {
                        activator.activate();
                    } else {
                        activator.activate_after(idle_poll);
                    }
                }
            }
        }
    });
    Ok((stream, handle))
}

/// Keeps `handle`'s [`KeyHolds`] from the dataflow's announcements of drivers whose rules
/// depend on records since a time the probe no longer holds. Every worker hears every
/// announcement (a driver's records may come from any partition, read by any worker of any
/// process). Probe the returned stream with the probe the source commits by: the probe then
/// passes an announcement's time only once every worker keeps it, and the announcement is
/// stamped at or before the hold it announces (`pitwall_dataflows::keyed::KeyedLogic::released`),
/// so no commit passes a hold it has not heard of.
pub fn follow_key_holds<'s>(holds: Stream<'s, EventTime, Vec<DriverHold>>, handle: &SourceHandle) -> Stream<'s, EventTime, Vec<()>> {
    let kept = handle.key_holds();
    holds.broadcast().unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "KeyHolds", move |_, _| {
        move |input, _output| {
            input.for_each(|_, data| {
                let mut kept = kept.borrow_mut();
                for hold in data.drain(..) {
                    match hold.since {
                        Some(since) => kept.insert(hold.driver.into(), since),
                        None => kept.remove(hold.driver.as_str()),
                    };
                }
            });
        }
    })
}

/// The delivered-before mark for the outputs of a key read from the partitions `read_from`
/// (`None`: static assignment), given every partition's mark (`None`: no mark).
///
/// - **Static assignment**: every mark was written by a run of the one job, each the frontier
///   of its probe after the sinks (a run starts its marks at the ones it found, and drops what it
///   re-derives before them, so an output before any mark was delivered by some run). The
///   furthest mark of any partition is therefore safe for every key, however its records were
///   partitioned (murmur2, CRC32, unkeyed, a grown topic), and it is the one that drops every
///   partial re-derivation: an output the replay rebuilds partially is stamped before the mark
///   of the partition it was cut on, which is at most the furthest.
/// - **Group membership**: each partition's mark is the probe of whichever instance committed
///   it, so only the key's own partitions' marks say anything about its outputs; for a key read
///   from several (unkeyed input, a grown topic) the earliest is taken, which never drops an
///   output that was not delivered (it may re-send one that was: at least once). A key with a
///   partition without a mark, or not read yet, drops nothing.
pub fn mark_for(marks: &[Option<EventTime>], read_from: Option<&[i32]>) -> Option<EventTime> {
    match read_from {
        None => marks.iter().flatten().copied().max(),
        Some([]) => None,
        Some(partitions) => partitions.iter().map(|p| usize::try_from(*p).ok().and_then(|p| marks.get(p).copied().flatten())).min().flatten(),
    }
}

/// Sorts a decoded message into a record, a late record or a dead letter; returns it with the
/// event time its checkpoint covers (the watermark for anything that is not a record).
fn classify<R>(
    decoded: Decoded<R, String>,
    bound: EventTime,
    topic: &str,
    at: SourcePosition,
    key: Option<&[u8]>,
    payload: &[u8],
) -> (SourceEvent<R>, Option<EventTime>) {
    match decoded {
        Ok((time, _)) if time < bound => (SourceEvent::Late(LateRecord::new(topic, at, key, payload, time, bound)), None),
        Ok((time, record)) => (SourceEvent::Record(record), Some(time)),
        Err(reason) => (SourceEvent::Dead(DeadLetter::new(topic, at, key, payload, reason)), None),
    }
}

#[cfg(test)]
mod tests {
    use super::mark_for;

    #[test]
    fn a_static_job_drops_by_its_furthest_mark_whatever_partitioned_the_key() {
        let marks = [Some(100), None, Some(250), Some(180)];
        assert_eq!(mark_for(&marks, None), Some(250), "any partition's: every mark is the same job's probe");
        assert_eq!(mark_for(&[None, None], None), None, "after a clean stop nothing is dropped");
    }

    #[test]
    fn a_group_member_drops_by_the_partitions_it_read_the_key_from() {
        let marks = [Some(100), None, Some(250), Some(180)];
        assert_eq!(mark_for(&marks, Some(&[2])), Some(250), "the key's own partition, not the furthest");
        assert_eq!(mark_for(&marks, Some(&[3])), Some(180));
        assert_eq!(mark_for(&marks, Some(&[3, 0])), Some(100), "read from two: the earliest, never dropping what was not delivered");
        assert_eq!(mark_for(&marks, Some(&[0, 1])), None, "a partition without a mark drops nothing");
        assert_eq!(mark_for(&marks, Some(&[])), None, "a key not read yet");
        assert_eq!(mark_for(&marks, Some(&[7])), None, "a partition added since the marks were read has none");
    }
}
