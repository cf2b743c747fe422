//! One owned partition's read progress: where it starts, what it has read, when it is idle or
//! finished, and whether it has read too far ahead of the slowest worker (the read-ahead bound).
//!
//! Nothing here talks to the broker after [`open_partitions`]: the decisions are pure functions
//! of [`PartitionState`], which is what the unit tests drive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_dataflows::partition::PartitionOwner;
use pitwall_dataflows::records::EventTime;
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::commit::{KeyTrails, Trail, MAX_CHECKPOINTS};
use super::{SourceConfig, SourceEvent};
use crate::kafka::config::{Reader, ReaderContext, METADATA_TIMEOUT};
use crate::kafka::group::Lease;
use crate::kafka::metrics::SourceMetrics;
use crate::kafka::KafkaError;

/// Read progress of one owned partition.
#[derive(Debug)]
pub(super) struct PartitionState {
    pub(super) partition: i32,
    pub(super) max_event_time: Option<EventTime>,
    pub(super) last_message: Instant,
    /// Offset after the last message read.
    pub(super) next_offset: Option<i64>,
    /// End offset listed at start (exit-at-end): the partition is finished at the first
    /// end-of-partition event at or after it.
    pub(super) end_offset: Option<i64>,
    /// When the broker reported end-of-partition, if no message came since.
    pub(super) eof_since: Option<Instant>,
    /// (latest event time emitted, offset after it), oldest first, not yet committed.
    pub(super) checkpoints: Trail,
    /// Per key, records since the last commit: a commit never starts a key's replay after the mark.
    pub(super) keys: KeyTrails,
    pub(super) committed: Option<i64>,
    /// The delivered-before mark found at start: marks this run commits never go below it (early
    /// in a replay the probe is behind it, and a worker still starting may not have read it).
    pub(super) mark_floor: EventTime,
    pub(super) metrics: Option<PartitionMetrics>,
    /// Reading paused: this partition ran too far ahead of the slowest (see [`read_ahead_changes`]).
    pub(super) paused: bool,
}

impl PartitionState {
    /// A partition about to be read from `start` (an offset), nothing read yet.
    pub(super) fn new(partition: i32, start: i64) -> PartitionState {
        PartitionState {
            partition,
            max_event_time: None,
            last_message: Instant::now(),
            next_offset: Some(start),
            end_offset: None,
            eof_since: None,
            checkpoints: Trail::new(MAX_CHECKPOINTS),
            keys: KeyTrails::default(),
            committed: Some(start),
            mark_floor: 0,
            metrics: None,
            paused: false,
        }
    }

    /// Finished (exit-at-end): the broker said end of partition at or past the listed end.
    pub(super) fn done(&self) -> bool {
        match (self.end_offset, self.next_offset) {
            (Some(end), Some(next)) => self.eof_since.is_some() && next >= end,
            _ => false,
        }
    }

    /// Records that the message at `offset` was read and emitted, covering event time `time`.
    pub(super) fn read(&mut self, offset: i64, time: EventTime, now: Instant) {
        self.last_message = now;
        self.eof_since = None;
        self.next_offset = Some(offset + 1);
        let newest = self.checkpoints.newest().map_or(time, |(t, _)| t.max(time));
        self.checkpoints.push((newest, offset + 1));
    }

    /// Where this partition would put the watermark: its newest event time less the allowed
    /// lateness (`None` before its first record).
    pub(super) fn candidate(&self, lateness_ms: u64) -> Option<EventTime> {
        self.max_event_time.map(|m| m.saturating_sub(lateness_ms))
    }

    /// Why a record at `time` is refused as a jump implausibly far ahead of this partition's
    /// newest record (more than `bound` ms; `None` when it is not, when there is no bound, or
    /// before the partition's first record). One such record would otherwise drag the
    /// partition's watermark candidate with it: every later record of the partition late, its
    /// commits stopped behind the absurd time, its reading paused by the read-ahead bound.
    pub(super) fn implausible_jump(&self, time: EventTime, bound: Option<u64>) -> Option<String> {
        let (bound, newest) = (bound?, self.max_event_time?);
        (time > newest.saturating_add(bound)).then(|| {
            format!(
                "event time {time} ms is {} ms ahead of partition {}'s newest record ({newest} ms), more than the {bound} ms a partition may jump (--max-event-time-jump-ms)",
                time - newest,
                self.partition
            )
        })
    }

    /// Whether this partition stops holding the watermark back: the broker said it is caught
    /// up and nothing came for `eof_grace`, or nothing at all came for `idle_timeout`.
    pub(super) fn idle(&self, eof_grace: Duration, idle_timeout: Duration) -> bool {
        self.eof_since.is_some_and(|since| since.elapsed() >= eof_grace) || self.last_message.elapsed() >= idle_timeout
    }
}

/// One partition's metric handles, resolved once.
#[derive(Debug)]
pub(super) struct PartitionMetrics {
    records: IntCounter,
    bytes: IntCounter,
    dead_letters: IntCounter,
    late: IntCounter,
    pub(super) consumer_lag: IntGauge,
    pub(super) stalled: IntGauge,
    pub(super) watermark_lag_ms: IntGauge,
    pub(super) watermark_ms: IntGauge,
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

    pub(super) fn count<R>(&self, event: &SourceEvent<R>, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
        match event {
            SourceEvent::Record(_) => self.records.inc(),
            SourceEvent::Late(_) => self.late.inc(),
            SourceEvent::Dead(_) => self.dead_letters.inc(),
        }
    }
}

/// The partitions `owned` of `config.topic`, assigned to `consumer` from the offsets committed
/// to the group (the log start where none is), each with its own message queue, its end offset
/// (exit-at-end), its mark floor (from `delivered_before`) and its metrics.
pub(super) fn open_partitions(
    consumer: &Arc<Reader>,
    config: &SourceConfig,
    owned: &[i32],
    delivered_before: &[Option<EventTime>],
) -> Result<(Vec<PartitionState>, Vec<PartitionQueue<ReaderContext>>), KafkaError> {
    let topic = &config.topic;
    let mut assignment = TopicPartitionList::new();
    for &p in owned {
        assignment.add_partition_offset(topic, p, Offset::Stored).map_err(KafkaError::client("building an assignment"))?;
    }
    let committed = if owned.is_empty() {
        TopicPartitionList::new()
    } else {
        consumer
            .committed_offsets(assignment.clone(), METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading committed offsets of group `{}`", config.group)))?
    };
    consumer.assign(&assignment).map_err(KafkaError::client(format!("assigning partitions {owned:?} of `{topic}`")))?;
    // Right after the assignment (which undoes splits) and before anything else: librdkafka
    // starts fetching at once, and what it fetched before a partition's queue is split stays on
    // the consumer's own queue (end-of-partition events included).
    let queues = owned
        .iter()
        .map(|&p| {
            consumer
                .split_partition_queue(topic, p)
                .ok_or_else(|| KafkaError::NoSuchTopic { topic: topic.clone(), brokers: config.kafka.brokers.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut partitions = Vec::with_capacity(owned.len());
    for &p in owned {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading the offsets of `{topic}` partition {p}")))?;
        let start = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        partitions.push(partition_state(config, p, start, high, delivered_before));
    }
    Ok((partitions, queues))
}

/// This worker's share `owned` of a group lease: each partition's queue (split off when it was
/// assigned), from the offset committed when it was assigned (the log start where none was),
/// with its end offset (exit-at-end), mark floor and metrics. A partition whose queue is gone
/// (revoked meanwhile) is left out.
///
/// The partitions' offsets are asked through `offsets` (any consumer of the cluster), not the
/// member: right after a rebalance the member's own offset queries took ~1 s per partition
/// against Tansu (a 4.6 s build of a 4-partition lease's dataflow), a plain consumer's ~20 ms.
pub(super) fn open_leased(
    lease: &Lease,
    offsets: &Reader,
    config: &SourceConfig,
    owned: &[i32],
    delivered_before: &[Option<EventTime>],
) -> Result<(Vec<PartitionState>, Vec<PartitionQueue<ReaderContext>>), KafkaError> {
    let topic = &config.topic;
    let (mut partitions, mut queues) = (Vec::with_capacity(owned.len()), Vec::with_capacity(owned.len()));
    for &p in owned {
        let Some(queue) = lease.take_queue(p) else {
            tracing::warn!(topic = %topic, partition = p, generation = lease.generation, "no queue for a leased partition (revoked meanwhile): not read");
            continue;
        };
        let (low, high) = offsets
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading the offsets of `{topic}` partition {p}")))?;
        partitions.push(partition_state(config, p, lease.committed(p).unwrap_or(low), high, delivered_before));
        queues.push(queue);
    }
    Ok((partitions, queues))
}

/// A partition's read state from `start`, as `config` and the marks say.
fn partition_state(config: &SourceConfig, p: i32, start: i64, high: i64, delivered_before: &[Option<EventTime>]) -> PartitionState {
    let mut state = PartitionState::new(p, start);
    state.end_offset = config.exit_at_end.then_some(high);
    state.mark_floor = delivered_before.get(p as usize).copied().flatten().unwrap_or(0);
    state.metrics = config.metrics.as_ref().map(|m| PartitionMetrics::new(m, &config.topic, p));
    state
}

/// The partitions of a topic with `count` partitions that this worker reads.
pub(super) fn owned_partitions(worker_index: usize, total_workers: usize, count: i32) -> Vec<i32> {
    PartitionOwner { worker_index, total_workers }.owned(count)
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
pub(super) fn read_ahead_changes(partitions: &[PartitionState], slowest: Option<EventTime>, ahead_ms: u64, lateness_ms: u64) -> (Vec<i32>, Vec<i32>) {
    let Some(slowest) = slowest else {
        return (Vec::new(), partitions.iter().filter(|s| s.paused).map(|s| s.partition).collect());
    };
    let lead = |s: &PartitionState| s.candidate(lateness_ms).unwrap_or(0).saturating_sub(slowest);
    let pause = partitions.iter().filter(|s| !s.paused && !s.done() && lead(s) > ahead_ms).map(|s| s.partition).collect();
    let resume = partitions.iter().filter(|s| s.paused && (s.done() || lead(s) <= ahead_ms / 2)).map(|s| s.partition).collect();
    (pause, resume)
}

/// Test fixtures shared by the source's unit tests.
#[cfg(test)]
pub(super) mod fixtures {
    use super::PartitionState;
    use pitwall_dataflows::records::EventTime;

    /// Partition 0, nothing read.
    pub fn partition() -> PartitionState {
        PartitionState { next_offset: None, committed: None, ..PartitionState::new(0, 0) }
    }

    /// Partition `partition` with its newest event time at `max_event_time`.
    pub fn at(partition: i32, max_event_time: Option<EventTime>) -> PartitionState {
        PartitionState { partition, max_event_time, ..self::partition() }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::fixtures::at;
    use super::*;

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
    fn a_record_jumping_more_than_the_bound_ahead_of_its_partition_is_refused_with_the_reason() {
        let fresh = at(3, None);
        assert_eq!(fresh.implausible_jump(u64::MAX, Some(3_600_000)), None, "nothing to judge a first record by");
        let reading = at(3, Some(10_000));
        assert_eq!(reading.implausible_jump(3_610_000, Some(3_600_000)), None, "exactly the bound is allowed");
        let reason = reading.implausible_jump(3_610_001, Some(3_600_000)).expect("past the bound");
        assert!(reason.contains("3600001 ms ahead of partition 3's newest record (10000 ms)"), "{reason}");
        assert_eq!(reading.implausible_jump(u64::MAX, None), None, "no bound, no check");
        assert!(at(0, Some(u64::MAX - 5)).implausible_jump(u64::MAX, Some(1)).is_some(), "no overflow near the top");
        assert_eq!(reading.implausible_jump(5, Some(1)), None, "behind is the late rule's business");
    }
}
