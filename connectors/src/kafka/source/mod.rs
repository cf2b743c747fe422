//! The Kafka source of a timely dataflow.
//!
//! Every worker, across all processes, reads the partitions that [`PartitionOwner`] gives it
//! with `assign` (no group rebalancing inside a fixed timely cluster), starting from the offsets
//! committed to the consumer group. Each poll batch is emitted at the current capability, the
//! watermark: the minimum over the worker's active partitions of (max event time seen - allowed
//! lateness). Idleness is decided by the broker first: a partition it reports caught up (end of
//! partition) that stays silent for `eof_grace` does not hold the watermark back; `idle_timeout`
//! is the fallback for partitions the broker says nothing about. Records whose event time is
//! already behind the watermark are late: they are emitted as [`LateRecord`]s, never dropped.
//!
//! With exit-at-end, a partition is finished at the first end-of-partition event once its
//! position has reached the end offset listed at start: listed offsets alone are not trusted
//! (some Kafka-protocol brokers under-report them), the fetch position is.
//!
//! Offsets are committed after the records they cover are fully processed: a probe placed
//! after the sinks passes a time only once every output derived from earlier records has been
//! delivered, so for each partition the source commits the offset after the last record whose
//! event time the probe has passed. This is at-least-once: a crash replays from the last commit.
//!
//! Each commit is preceded by a record of the probe's frontier T at that moment: every output
//! at a time before T had been delivered. It is kept where any Kafka-protocol broker keeps it,
//! as the committed "offset" T of the same partition in a companion consumer group
//! `<group>.delivered-before` (commit metadata would be the natural place, but not every broker
//! keeps it: Tansu drops it). It is committed, synchronously, before the offsets, so a crash
//! between the two leaves a newer mark with older offsets, which is safe. A restarted job reads
//! the marks back ([`SourceHandle::delivered_before`]) and drops the outputs it re-derives at times before
//! them instead of sending them again. A clean end (everything delivered and committed) writes
//! mark 0: nothing is replayed from there. The offset committed with a mark is pulled back so
//! that every key's replay starts at one of its records older than the mark (`resume.rs`):
//! otherwise an output the replay rebuilds from only part of its samples would be stamped at
//! or after the mark and sent again, incomplete.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_dataflows::partition::{key_partition, PartitionOwner};
use pitwall_dataflows::records::{DeadLetter, EventTime, LateRecord, SourcePosition};
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Capability, OkErr};
use timely::dataflow::{Scope, Stream};

use super::config::{Reader, ReaderContext, METADATA_TIMEOUT};
use super::health::SourceHealth;
use super::metrics::SourceMetrics;
mod commit;

use commit::{KeyTrails, Trail};
use super::{KafkaConfig, KafkaError};

/// Most messages one activation reads unless configured: each poll batch is a dataflow step, and
/// each step pays timely's progress bookkeeping; 8,192 was ~8% faster than 4,096 reading a
/// backlog at `-w 2`, more gained nothing (`bench-results/2026-12-01/ab-poll-batch.md`).
pub const DEFAULT_MAX_BATCH: usize = 8_192;

/// Event time a partition may read ahead of the slowest before it is paused, unless configured
/// (see [`read_ahead_changes`]).
pub const DEFAULT_MAX_READ_AHEAD_MS: u64 = 600_000;

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
    /// Event time a partition may read ahead of the topic's slowest active partition (every
    /// worker's, through `board`) before its reading is paused; `None` never pauses. See
    /// [`read_ahead_changes`].
    pub max_read_ahead_ms: Option<u64>,
}

/// The watermarks of one topic's sources, by (global) worker: `(watermark, active)`. This
/// process's workers report directly; the other processes' workers arrive through
/// [`WatermarkBoard::post_remote`] (the job broadcasts each worker's entry through timely).
#[derive(Clone, Debug, Default)]
pub struct WatermarkBoard(Arc<std::sync::Mutex<BoardEntries>>);

#[derive(Debug, Default)]
struct BoardEntries {
    entries: std::collections::BTreeMap<usize, (EventTime, bool)>,
    /// Workers of this process: their own reports win over broadcast copies.
    local: std::collections::BTreeSet<usize>,
}

impl WatermarkBoard {
    fn report(&self, worker: usize, watermark: EventTime, active: bool) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.local.insert(worker);
        board.entries.insert(worker, (watermark, active));
    }

    /// This process's worker `worker`'s entry, to broadcast to the other processes.
    pub fn entry(&self, worker: usize) -> Option<(EventTime, bool)> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.local.contains(&worker).then(|| board.entries.get(&worker).copied()).flatten()
    }

    /// Another process's worker's entry, as broadcast (ignored for this process's workers).
    pub fn post_remote(&self, worker: usize, watermark: EventTime, active: bool) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !board.local.contains(&worker) {
            board.entries.insert(worker, (watermark, active));
        }
    }

    /// The slowest watermark of any worker with active partitions, this one included.
    fn slowest_active(&self) -> Option<EventTime> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.entries.values().filter(|(_, active)| *active).map(|(t, _)| *t).min()
    }

    /// Where an idle worker may go: the slowest other worker that still has active partitions,
    /// or, when every other worker is idle too, the furthest of them.
    fn follow(&self, worker: usize) -> Option<EventTime> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let others = board.entries.iter().filter(|(w, _)| **w != worker).map(|(_, v)| *v);
        let active = others.clone().filter(|(_, a)| *a).map(|(t, _)| t).min();
        active.or_else(|| others.map(|(t, _)| t).max())
    }
}

impl SourceConfig {
    pub fn new(kafka: KafkaConfig, topic: impl Into<String>) -> SourceConfig {
        SourceConfig {
            kafka,
            topic: topic.into(),
            group: "pitwall".into(),
            allowed_lateness_ms: 500,
            eof_grace: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(3),
            exit_at_end: false,
            max_batch: DEFAULT_MAX_BATCH,
            commit_interval: Duration::from_secs(1),
            metrics: None,
            board: None,
            max_read_ahead_ms: None,
        }
    }
}

/// One message, decoded: its event time and record, or why it was refused.
pub type Decoded<R> = Result<(EventTime, R), String>;

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

/// Read progress of one owned partition.
#[derive(Debug)]
struct PartitionState {
    partition: i32,
    max_event_time: Option<EventTime>,
    last_message: Instant,
    /// Offset after the last message read.
    next_offset: Option<i64>,
    /// End offset listed at start (exit-at-end): the partition is finished at the first
    /// end-of-partition event at or after it.
    end_offset: Option<i64>,
    /// When the broker reported end-of-partition, if no message came since.
    eof_since: Option<Instant>,
    /// (latest event time emitted, offset after it), oldest first, not yet committed.
    checkpoints: Trail,
    /// Per key, records since the last commit: a commit never starts a key's replay after the mark.
    keys: KeyTrails,
    committed: Option<i64>,
    /// The delivered-before mark found at start: marks this run commits never go below it (early
    /// in a replay the probe is behind it, and a worker still starting may not have read it).
    mark_floor: EventTime,
    metrics: Option<PartitionMetrics>,
    /// Reading paused: this partition ran too far ahead of the slowest (see [`read_ahead_changes`]).
    paused: bool,
}

/// One partition's metric handles, resolved once.
#[derive(Debug)]
struct PartitionMetrics {
    records: IntCounter,
    bytes: IntCounter,
    dead_letters: IntCounter,
    late: IntCounter,
    consumer_lag: IntGauge,
    stalled: IntGauge,
    watermark_lag_ms: IntGauge,
    watermark_ms: IntGauge,
}

impl PartitionMetrics {
    fn new(metrics: &SourceMetrics, topic: &str, partition: i32) -> PartitionMetrics {
        let labels = [topic, &partition.to_string()];
        PartitionMetrics {
            records: metrics.records.with_label_values(&labels),
            bytes: metrics.bytes.with_label_values(&labels),
            dead_letters: metrics.dead_letters.with_label_values(&labels),
            late: metrics.late.with_label_values(&labels),
            consumer_lag: metrics.consumer_lag.with_label_values(&labels),
            stalled: metrics.stalled.with_label_values(&labels),
            watermark_lag_ms: metrics.watermark_lag_ms.with_label_values(&labels),
            watermark_ms: metrics.watermark_ms.with_label_values(&labels),
        }
    }

    fn count<R>(&self, event: &SourceEvent<R>, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
        match event {
            SourceEvent::Record(_) => self.records.inc(),
            SourceEvent::Late(_) => self.late.inc(),
            SourceEvent::Dead(_) => self.dead_letters.inc(),
        }
    }
}

impl PartitionState {
    fn done(&self) -> bool {
        match (self.end_offset, self.next_offset) {
            (Some(end), Some(next)) => self.eof_since.is_some() && next >= end,
            _ => false,
        }
    }
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

struct SourceInner {
    consumer: Arc<Reader>,
    /// Each partition's own message queue, in the order of `partitions`: a partition that read
    /// ahead is left unpolled while the others are read.
    queues: Vec<PartitionQueue<ReaderContext>>,
    /// Commits the delivered-before marks (group `<group>.delivered-before`).
    marks: Reader,
    /// Every partition's delivered-before mark as found at start (see [`read_marks`]).
    delivered_before: Vec<Option<EventTime>>,
    health: SourceHealth,
    topic: String,
    partitions: Vec<PartitionState>,
    stats: SourceStats,
}

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

    /// Commits, per partition, the offset after the newest checkpoint whose time `passed` says
    /// is done, after `delivered` (the probe's frontier; `None` at a clean end) as its mark.
    fn commit_passed(&mut self, passed: impl Fn(EventTime) -> bool, delivered: Option<EventTime>, mode: CommitMode) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        let mut marks = TopicPartitionList::new();
        let mut updated = Vec::new();
        for (index, state) in self.partitions.iter_mut().enumerate() {
            let newest = state.checkpoints.pop_while(|(time, _)| passed(*time)).map(|(_, offset)| offset);
            // A clean end (`delivered` is None) rewrites every committed offset with mark 0, so
            // an older mark cannot outlive this run.
            let newest = newest.or(if delivered.is_none() { state.committed } else { None });
            // Mark 0 (a clean end) drops nothing on a later start.
            let mark = delivered.map_or(0, |time| time.max(state.mark_floor));
            // No key's replay may start at or after the mark (`resume.rs`); never backwards.
            let newest = match (newest, delivered) {
                (Some(after), Some(_)) => Some(state.keys.resume_at(after, mark).max(state.committed.unwrap_or(0))),
                (newest, _) => newest,
            };
            if let Some(offset) = newest {
                if state.committed != Some(offset) || delivered.is_none() {
                    list.add_partition_offset(&self.topic, state.partition, Offset::Offset(offset))
                        .map_err(KafkaError::client("building a commit"))?;
                    marks
                        .add_partition_offset(&self.topic, state.partition, Offset::Offset(mark as i64))
                        .map_err(KafkaError::client("building a commit"))?;
                    updated.push((index, offset));
                }
            }
        }
        if marks.count() > 0 {
            // Synchronously and first: offsets are never committed past a mark not yet stored.
            self.marks
                .commit(&marks, CommitMode::Sync)
                .map_err(KafkaError::client(format!("committing delivered-before marks of `{}`", self.topic)))?;
        }
        if list.count() > 0 {
            self.consumer.commit(&list, mode).map_err(KafkaError::client(format!("committing offsets of `{}`", self.topic)))?;
            for (index, offset) in updated {
                self.partitions[index].committed = Some(offset);
            }
            self.stats.commits += 1;
        }
        Ok(())
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

    /// Per partition of the topic (by index): the delivered-before mark found at start, before
    /// which the outputs of the previous run were all delivered (`None`: no mark).
    pub fn delivered_before(&self) -> Vec<Option<EventTime>> {
        self.inner.borrow().delivered_before.clone()
    }

    /// The delivered-before mark of the partition Kafka's default partitioner gives `key`
    /// (`None` for every key after a clean stop or in a fresh group: nothing to look up).
    pub fn key_marks(&self) -> impl Fn(&[u8]) -> Option<EventTime> + Clone + 'static {
        let marks = Rc::new(self.delivered_before());
        let any = marks.iter().any(Option::is_some);
        move |key| any.then(|| marks.get(key_partition(key, marks.len().max(1) as i32) as usize).copied().flatten()).flatten()
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

/// The companion group that keeps `group`'s delivered-before marks (see the module docs).
fn marks_group(group: &str) -> String {
    format!("{group}.delivered-before")
}

/// Per partition of `topic` (by index), as `marks` (a consumer of [`marks_group`]) finds them:
/// the time before which every output of the job that last committed had been delivered; `None`
/// where there is no mark (a fresh group) or it is 0 (a clean end).
fn read_marks(marks: &Reader, topic: &str, count: i32, group: &str) -> Result<Vec<Option<EventTime>>, KafkaError> {
    let mut partitions = TopicPartitionList::new();
    for p in 0..count {
        partitions.add_partition_offset(topic, p, Offset::Stored).map_err(KafkaError::client("building a partition list"))?;
    }
    let committed = marks
        .committed_offsets(partitions, METADATA_TIMEOUT)
        .map_err(KafkaError::client(format!("reading committed offsets of group `{}`", marks_group(group))))?;
    Ok((0..count)
        .map(|p| match committed.find_partition(topic, p)?.offset() {
            Offset::Offset(mark) if mark > 0 => Some(mark as EventTime),
            _ => None,
        })
        .collect())
}

/// Builds the source for this worker. `decode` turns a message into an event time and record.
pub fn kafka_source<'s, R, D>(
    scope: Scope<'s, EventTime>,
    config: SourceConfig,
    mut decode: D,
    probe: ProbeHandle<EventTime>,
    shutdown: Arc<AtomicBool>,
) -> Result<(SourceStream<'s, R>, SourceHandle), KafkaError>
where
    R: Clone + 'static,
    D: FnMut(SourcePosition, Option<&[u8]>, &[u8]) -> Decoded<R> + 'static,
{
    let owner = PartitionOwner { worker_index: scope.index(), total_workers: scope.peers() };
    let worker_index = scope.index();
    // The marks' consumer first: the reader's prefetch is sized by how many partitions it owns.
    let marks = config.kafka.plain_consumer(&marks_group(&config.group))?;
    let count = config.kafka.partition_count(&marks, &config.topic)?;
    let owned = owner.owned(count);
    let consumer = Arc::new(config.kafka.partition_reader(&config.group, owned.len())?);
    let topic = config.topic.clone();

    let mut assignment = TopicPartitionList::new();
    for &p in &owned {
        assignment.add_partition_offset(&topic, p, Offset::Stored).map_err(KafkaError::client("building an assignment"))?;
    }
    let committed = if owned.is_empty() {
        TopicPartitionList::new()
    } else {
        consumer
            .committed_offsets(assignment.clone(), METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading committed offsets of group `{}`", config.group)))?
    };
    consumer.assign(&assignment).map_err(KafkaError::client(format!("assigning partitions {owned:?} of `{topic}`")))?;
    // After the assignment (which undoes splits) and before the first poll (so nothing is
    // buffered on the consumer's own queue).
    let queues = owned
        .iter()
        .map(|&p| {
            consumer
                .split_partition_queue(&topic, p)
                .ok_or_else(|| KafkaError::NoSuchTopic { topic: topic.clone(), brokers: config.kafka.brokers.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Read once per worker: the floors of this worker's own marks, and (through the handle)
    // every partition's mark for the operators that drop re-derived outputs.
    let delivered_before = read_marks(&marks, &topic, count, &config.group)?;
    let mut partitions = Vec::new();
    for &p in &owned {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading the offsets of `{topic}` partition {p}")))?;
        let start = match committed.find_partition(&topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        partitions.push(PartitionState {
            partition: p,
            max_event_time: None,
            last_message: Instant::now(),
            next_offset: Some(start),
            end_offset: config.exit_at_end.then_some(high),
            eof_since: None,
            checkpoints: Trail::new(MAX_CHECKPOINTS),
            keys: KeyTrails::default(),
            committed: Some(start),
            mark_floor: delivered_before.get(p as usize).copied().flatten().unwrap_or(0),
            metrics: config.metrics.as_ref().map(|m| PartitionMetrics::new(m, &topic, p)),
            paused: false,
        });
    }
    tracing::info!(worker = scope.index(), topic = %topic, partitions = ?owned, "kafka source assigned");

    let health = SourceHealth::start(&config.kafka, &topic, &owned);
    let inner = Rc::new(RefCell::new(SourceInner {
        consumer,
        queues,
        marks,
        delivered_before,
        health,
        topic: topic.clone(),
        partitions,
        stats: SourceStats::default(),
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
            let watermark = *cap.time();
            let mut read = 0;
            // One clock read per activation: a batch is read within microseconds.
            let now = Instant::now();
            let SourceInner { consumer, queues, partitions, stats, .. } = &mut *inner;
            if !shutdown.load(Ordering::Relaxed) {
                let mut ingest = |state: &mut PartitionState, message: &BorrowedMessage<'_>| {
                    let at = SourcePosition { partition: message.partition(), offset: message.offset() };
                    let (key, payload) = (message.key(), message.payload().unwrap_or_default());
                    if let Some(expected) = state.next_offset.filter(|n| at.offset > *n) {
                        stats.skipped_offsets += (at.offset - expected) as u64;
                        tracing::warn!(
                            topic = %topic,
                            partition = at.partition,
                            from = expected,
                            to = at.offset - 1,
                            "the broker skipped offsets: expected on a compacted or transactional topic, otherwise records were lost before pitwall read them"
                        );
                    }
                    let bound = state.candidate(config.allowed_lateness_ms).map_or(watermark, |c| watermark.max(c));
                    let (event, record_time) = classify(decode(at, key, payload), bound, &topic, at, key, payload);
                    stats.count(&event, payload.len());
                    if let Some(metrics) = &state.metrics {
                        metrics.count(&event, payload.len());
                    }
                    // Late records and dead letters are emitted at the watermark: that is what their
                    // checkpoint covers (the partition's bound may be ahead of it).
                    let checkpoint_time = match record_time {
                        Some(time) => {
                            state.max_event_time = Some(state.max_event_time.map_or(time, |m| m.max(time)));
                            state.keys.read(key, time, at.offset);
                            time
                        }
                        None => watermark,
                    };
                    state.read(at.offset, checkpoint_time, now);
                    batch.push(event);
                };
                // Errors and callbacks are served on the consumer's own queue; messages come on
                // their partitions' queues (split before the first poll), but one found here is
                // read all the same.
                while let Some(result) = consumer.poll(Duration::ZERO) {
                    match result {
                        Ok(message) => match partitions.iter_mut().find(|s| s.partition == message.partition()) {
                            Some(state) => ingest(state, &message),
                            None => {
                                tracing::error!(topic = %topic, partition = message.partition(), "a message of a partition this worker does not own")
                            }
                        },
                        Err(error) => tracing::warn!(%error, topic = %topic, "kafka read error"),
                    }
                }
                // Round robin over the partitions that are neither finished nor paused, a chunk
                // of each at a time, from a different partition each activation.
                let mut progressed = true;
                turn = turn.wrapping_add(1);
                while progressed && read < config.max_batch {
                    progressed = false;
                    for k in 0..partitions.len() {
                        let i = (turn + k) % partitions.len();
                        let (state, queue) = (&mut partitions[i], &queues[i]);
                        let mut taken = 0;
                        while !state.paused && !state.done() && taken < PARTITION_CHUNK && read < config.max_batch {
                            let Some(result) = queue.poll(Duration::ZERO) else {
                                break;
                            };
                            (taken, read, progressed) = (taken + 1, read + 1, true);
                            match result {
                                Ok(message) => ingest(state, &message),
                                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                                    state.eof_since.get_or_insert_with(Instant::now);
                                }
                                Err(error) => tracing::warn!(%error, topic = %topic, partition = state.partition, "kafka read error"),
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                output.session(&*cap).give_container(&mut batch);
            }

            let next = if shutdown.load(Ordering::Relaxed) {
                WatermarkStep::Finished
            } else {
                next_watermark(&inner.partitions, &config, worker_index, *cap.time())
            };
            if last_commit.elapsed() >= config.commit_interval {
                last_commit = Instant::now();
                inner.refresh_gauges(*cap.time());
                let delivered = probe.with_frontier(|f| f.first().copied());
                if let Err(error) = inner.commit_passed(|time| !probe.less_equal(&time), delivered, CommitMode::Async) {
                    tracing::warn!(%error, "offset commit failed; will retry");
                }
            }
            if let (Some(ahead), Some(board), false) = (config.max_read_ahead_ms, &config.board, shutdown.load(Ordering::Relaxed)) {
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
                        activator.activate_after(IDLE_POLL);
                    }
                }
            }
        }
    });
    Ok((stream, handle))
}

/// Sorts a decoded message into a record, a late record or a dead letter; returns it with the
/// event time its checkpoint covers (the watermark for anything that is not a record).
fn classify<R>(
    decoded: Decoded<R>,
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

impl PartitionState {
    /// Records that the message at `offset` was read and emitted, covering event time `time`.
    fn read(&mut self, offset: i64, time: EventTime, now: Instant) {
        self.last_message = now;
        self.eof_since = None;
        self.next_offset = Some(offset + 1);
        let newest = self.checkpoints.newest().map_or(time, |(t, _)| t.max(time));
        self.checkpoints.push((newest, offset + 1));
    }

    /// Where this partition would put the watermark: its newest event time less the allowed
    /// lateness (`None` before its first record).
    fn candidate(&self, lateness_ms: u64) -> Option<EventTime> {
        self.max_event_time.map(|m| m.saturating_sub(lateness_ms))
    }

    /// Whether this partition stops holding the watermark back: the broker said it is caught
    /// up and nothing came for `eof_grace`, or nothing at all came for `idle_timeout`.
    fn idle(&self, eof_grace: Duration, idle_timeout: Duration) -> bool {
        self.eof_since.is_some_and(|since| since.elapsed() >= eof_grace) || self.last_message.elapsed() >= idle_timeout
    }
}

/// Which partitions to pause and which to resume so that none reads more than `ahead_ms` of
/// event time past `slowest`, the watermark of the slowest worker with active partitions.
///
/// Partitions are read byte-fair, but event time moves with records per driver: a partition
/// with one driver crosses the race five times faster than one with five. Replaying a backlog,
/// the fast partitions' records all wait in the dataflow for the watermark (held by the slowest),
/// so the buffered samples grew with the backlog (half of a million-record replay at its peak).
/// Paused, a partition's records wait in the log instead. A paused partition resumes once the
/// slowest is within half of `ahead_ms` of it (so the two do not alternate every activation). The
/// slowest partition itself is never ahead of the slowest watermark, so reading never stops, and
/// a paused partition counts as active (never idle) for the watermark, so it cannot be passed.
/// Outputs do not change: each partition is still read in order, only the interleaving moves.
fn read_ahead_changes(partitions: &[PartitionState], slowest: Option<EventTime>, ahead_ms: u64, lateness_ms: u64) -> (Vec<i32>, Vec<i32>) {
    let Some(slowest) = slowest else {
        return (Vec::new(), partitions.iter().filter(|s| s.paused).map(|s| s.partition).collect());
    };
    let lead = |s: &PartitionState| s.candidate(lateness_ms).unwrap_or(0).saturating_sub(slowest);
    let pause = partitions.iter().filter(|s| !s.paused && !s.done() && lead(s) > ahead_ms).map(|s| s.partition).collect();
    let resume = partitions.iter().filter(|s| s.paused && (s.done() || lead(s) <= ahead_ms / 2)).map(|s| s.partition).collect();
    (pause, resume)
}

/// Most messages read from one partition before the next partition's turn.
const PARTITION_CHUNK: usize = 512;

/// How long an idle source waits before polling again.
const IDLE_POLL: Duration = Duration::from_millis(2);
/// Checkpoints kept per partition between commits (see [`Trail`]): a commit is at most 1/256
/// of what was read since the last one earlier than it could be.
const MAX_CHECKPOINTS: usize = 256;

enum WatermarkStep {
    To(EventTime),
    Finished,
}

fn next_watermark(partitions: &[PartitionState], config: &SourceConfig, worker: usize, current: EventTime) -> WatermarkStep {
    // A worker that owns no partition will never emit: it must not hold the frontier (with more
    // workers than partitions, live mode would otherwise stall at time 0 for everyone).
    if partitions.is_empty() {
        return WatermarkStep::Finished;
    }
    if config.exit_at_end && partitions.iter().all(PartitionState::done) {
        // Off the board as a worker still reading: others must not wait for it (read-ahead).
        if let Some(board) = &config.board {
            board.report(worker, current, false);
        }
        return WatermarkStep::Finished;
    }
    let candidate = |s: &PartitionState| s.candidate(config.allowed_lateness_ms);
    // With exit-at-end, an unfinished partition still has records to deliver, so it is never idle.
    let active: Vec<&PartitionState> =
        partitions.iter().filter(|s| !s.done() && (config.exit_at_end || s.paused || !s.idle(config.eof_grace, config.idle_timeout))).collect();
    if active.is_empty() {
        // Everything is idle or finished: let the watermark follow the furthest partition. A
        // worker whose partitions never carried a record has no event time of its own: it
        // follows the other workers of this process (it would otherwise hold everyone's windows
        // open forever in live mode). A worker that has seen data does not jump past it: its
        // partitions resuming later (after a pause, an outage) would find their records late.
        let own = partitions.iter().filter_map(candidate).max().unwrap_or(0).max(current);
        let never_read = partitions.iter().all(|p| p.max_event_time.is_none());
        let shared = config.board.as_ref().and_then(|b| {
            b.report(worker, own, false);
            never_read.then(|| b.follow(worker)).flatten()
        });
        return WatermarkStep::To(shared.map_or(own, |t| t.max(own)));
    }
    let watermark = active.iter().map(|s| candidate(s).unwrap_or(0)).min().unwrap_or(0);
    if let Some(board) = &config.board {
        board.report(worker, watermark.max(current), true);
    }
    WatermarkStep::To(watermark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionState {
        PartitionState {
            partition: 0,
            max_event_time: None,
            last_message: Instant::now(),
            next_offset: None,
            end_offset: None,
            eof_since: None,
            checkpoints: Trail::new(MAX_CHECKPOINTS),
            keys: KeyTrails::default(),
            committed: None,
            mark_floor: 0,
            metrics: None,
            paused: false,
        }
    }

    fn at(partition: i32, max_event_time: Option<EventTime>) -> PartitionState {
        PartitionState { partition, max_event_time, ..self::partition() }
    }

    #[test]
    fn a_partition_more_than_the_read_ahead_past_the_slowest_pauses_and_resumes_at_half() {
        // Lateness 500 ms: a partition's candidate watermark is its newest event time - 500.
        let mut parts = vec![at(0, Some(10_500)), at(1, Some(70_500)), at(2, Some(70_501)), at(3, None)];
        let (pause, resume) = read_ahead_changes(&parts, Some(10_000), 60_000, 500);
        assert_eq!(pause, vec![2], "only a lead over 60 s pauses; one never read is never ahead");
        assert!(resume.is_empty());
        parts[2].paused = true;
        // Still 30,001 ms ahead: stays paused (no flapping around the bound).
        assert_eq!(read_ahead_changes(&parts, Some(40_000), 60_000, 500), (vec![], vec![]));
        assert_eq!(read_ahead_changes(&parts, Some(40_001), 60_000, 500), (vec![], vec![2]));
        // Nobody active on the board (all idle or finished): nothing stays paused.
        assert_eq!(read_ahead_changes(&parts, None, 60_000, 500), (vec![], vec![2]));
        // A finished partition is never paused.
        let mut done = at(4, Some(1_000_000));
        (done.end_offset, done.next_offset, done.eof_since) = (Some(5), Some(5), Some(Instant::now()));
        assert_eq!(read_ahead_changes(&[done], Some(0), 60_000, 500), (vec![], vec![]));
    }

    #[test]
    fn a_paused_partition_is_never_idle_and_a_finished_worker_leaves_the_slowest_to_the_others() {
        let mut config = SourceConfig::new(KafkaConfig::new("unused:9092"), "t");
        let board = WatermarkBoard::default();
        config.board = Some(board.clone());
        // Silent for a minute, but paused by pitwall, not by the producer: it still holds the
        // watermark (its records would be late once it resumed behind a passed watermark).
        let mut paused = at(0, Some(90_500));
        paused.last_message = Instant::now() - Duration::from_secs(60);
        paused.paused = true;
        let mut behind = at(1, Some(20_500));
        behind.eof_since = Some(Instant::now() - Duration::from_secs(60));
        assert!(matches!(next_watermark(&[paused, behind], &config, 0, 0), WatermarkStep::To(90_000)));
        assert_eq!(board.slowest_active(), Some(90_000));
        assert!(matches!(next_watermark(&[at(0, Some(30_500))], &config, 1, 0), WatermarkStep::To(30_000)));
        assert_eq!(board.slowest_active(), Some(30_000));
        // Worker 1 reads to its end (exit-at-end): it no longer holds anyone's partitions back.
        config.exit_at_end = true;
        let mut finished = at(0, Some(40_500));
        (finished.end_offset, finished.next_offset, finished.eof_since) = (Some(9), Some(9), Some(Instant::now()));
        assert!(matches!(next_watermark(&[finished], &config, 1, 30_000), WatermarkStep::Finished));
        assert_eq!(board.slowest_active(), Some(90_000));
    }

    #[test]
    fn a_worker_without_partitions_releases_the_frontier_in_live_mode() {
        let config = SourceConfig::new(KafkaConfig::new("unused:9092"), "t");
        assert!(matches!(next_watermark(&[], &config, 0, 0), WatermarkStep::Finished));
        let mut waiting = partition();
        waiting.max_event_time = Some(10_000);
        assert!(matches!(next_watermark(&[waiting], &config, 0, 0), WatermarkStep::To(9_500)));
    }

    #[test]
    fn a_worker_whose_partitions_are_all_idle_follows_the_others_on_the_board() {
        let mut config = SourceConfig::new(KafkaConfig::new("unused:9092"), "t");
        config.board = Some(WatermarkBoard::default());
        let busy = |time| {
            let mut p = partition();
            p.max_event_time = Some(time);
            p
        };
        let idle = || {
            let mut p = partition();
            p.eof_since = Some(Instant::now() - Duration::from_secs(60));
            p
        };
        // Worker 0 reads data at 20 s; worker 1's partitions never carried any.
        assert!(matches!(next_watermark(&[busy(20_000)], &config, 0, 0), WatermarkStep::To(19_500)));
        assert!(matches!(next_watermark(&[idle(), idle()], &config, 1, 0), WatermarkStep::To(19_500)));
        // Worker 2, active but behind, is the slowest active one: empty workers follow it.
        assert!(matches!(next_watermark(&[busy(8_000)], &config, 2, 0), WatermarkStep::To(7_500)));
        assert!(matches!(next_watermark(&[idle()], &config, 1, 19_500), WatermarkStep::To(19_500)), "never backwards");
        assert!(matches!(next_watermark(&[idle()], &config, 3, 0), WatermarkStep::To(7_500)));
        // A worker that has read data and is now idle stays at its own data: its partitions may
        // resume (after a pause, an outage) and their records must not be late.
        let mut paused = busy(5_000);
        paused.eof_since = Some(Instant::now() - Duration::from_secs(60));
        assert!(matches!(next_watermark(&[paused], &config, 4, 0), WatermarkStep::To(4_500)));
        // Without a board an idle worker stays where its own data put it.
        config.board = None;
        assert!(matches!(next_watermark(&[idle()], &config, 3, 0), WatermarkStep::To(0)));
    }
}
