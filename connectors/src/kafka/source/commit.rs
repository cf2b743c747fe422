//! Commits: what the source commits, when, and where a restart resumes.
//!
//! Offsets are committed after the records they cover are fully processed: a probe placed after
//! the sinks passes a time only once every output derived from earlier records has been
//! delivered, so for each partition the source commits the offset after the last checkpoint
//! whose event time the probe has passed ([`Committer::commit_passed`]). Each commit while running
//! is preceded, synchronously, by its delivered-before mark in the companion group
//! `<group>.delivered-before` ([`marks_group`], read back at start by [`read_marks`]); a clean
//! end commits its offsets first and then mark 0 (nothing to drop on the next start), so that no
//! failure between the two leaves mark 0 beside older offsets.
//!
//! ## Where a restart resumes
//!
//! Where a restarted source must resume in a partition so that no key's replay begins inside an
//! output that had been delivered under a later time. A key is the record's own
//! (`RecordKey`: its driver, its video id), not its Kafka key: input may come unkeyed, or
//! partitioned by another hash, and outputs are per driver (per video) whatever carried them.
//!
//! The source commits, per partition, the offset after the last record older than the probe's
//! frontier (the delivered-before mark `M`), and a restarted job drops the outputs it re-derives
//! at times before `M` (`dataflows/src/restart.rs`). An output is stamped with the time of the
//! earliest sample it depends on (rounded down to the time granularity, which only moves a
//! stamp earlier), so an output the replay rebuilds *partially* (it had samples before the
//! committed offset) is stamped at or before the key's first replayed record. Committing
//! exactly at `M` makes that record's time `>= M`: the partial output was delivered before the
//! crash, yet it would be sent again, incomplete. Whenever keys interleave in a partition and one
//! key's window boundary lies after `M` (the frontier is the minimum over all keys), this happens.
//!
//! The rule kept here: the committed offset is at or before, for every key with a record read at
//! or after it, some record of that key older than `M`. The key's first replayed record is then
//! older than `M`, so whatever the replay rebuilds around it is stamped before `M` and dropped,
//! and it is exact: a partial rebuild had samples before the commit, hence before `M`, so it had
//! been delivered. A key whose records since the run started are all at or after `M` needs
//! nothing (the previous run's commit put its first record of this run before that run's mark,
//! which this run's marks never go below). It assumes a key's records are in event-time order in
//! its partition (Kafka's per-key order; out-of-order records are late and open no window).

use std::collections::{HashMap, VecDeque};

use pitwall_dataflows::records::EventTime;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::partition::PartitionState;
use crate::kafka::config::{Reader, METADATA_TIMEOUT};
use crate::kafka::KafkaError;

/// Checkpoints kept per partition between commits (see [`Trail`]): a commit is at most 1/256
/// of what was read since the last one earlier than it could be.
pub(super) const MAX_CHECKPOINTS: usize = 256;

/// The companion group that keeps `group`'s delivered-before marks (see the module docs).
pub(crate) fn marks_group(group: &str) -> String {
    format!("{group}.delivered-before")
}

/// Per partition of `topic` (by index), as `marks` (a consumer of [`marks_group`]) finds them:
/// the time before which every output of the job that last committed had been delivered; `None`
/// where there is no mark (a fresh group) or it is 0 (a clean end).
pub(crate) fn read_marks(marks: &Reader, topic: &str, count: i32, group: &str) -> Result<Vec<Option<EventTime>>, KafkaError> {
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

/// Commits one worker's offsets and their delivered-before marks: the mark first while running,
/// the offsets first at a clean end (see `commit_passed`).
pub(super) struct Committer {
    /// A consumer of the marks group (`<group>.delivered-before`).
    pub(super) marks: Reader,
    pub(super) topic: String,
    /// Stored with every committed offset: who committed it ([`crate::kafka::config::instance_id`]).
    pub(super) owner: String,
}

impl Committer {
    /// Commits, per partition, the offset after the newest checkpoint whose time `passed` says
    /// is done, after `delivered` (the probe's frontier; `None` at a clean end) as its mark.
    /// Returns whether any offset was committed.
    pub(super) fn commit_passed(
        &self,
        consumer: &Reader,
        partitions: &mut [PartitionState],
        passed: impl Fn(EventTime) -> bool,
        delivered: Option<EventTime>,
        mode: CommitMode,
        key_hold: impl Fn(&str) -> Option<EventTime>,
    ) -> Result<bool, KafkaError> {
        let mut list = TopicPartitionList::new();
        let mut marks = TopicPartitionList::new();
        let mut updated = Vec::new();
        for (index, state) in partitions.iter_mut().enumerate() {
            let newest = state.checkpoints.pop_while(|(time, _)| passed(*time)).map(|(_, offset)| offset);
            // A clean end (`delivered` is None) rewrites every committed offset with mark 0, so
            // an older mark cannot outlive this run.
            let newest = newest.or(if delivered.is_none() { state.committed } else { None });
            // Mark 0 (a clean end) drops nothing on a later start.
            let mark = delivered.map_or(0, |time| time.max(state.mark_floor));
            // No key's replay may start at or after the mark (below); never backwards.
            let newest = match (newest, delivered) {
                (Some(after), Some(_)) => Some(state.keys.resume_at(after, mark, &key_hold).max(state.committed.unwrap_or(0))),
                (newest, _) => newest,
            };
            if let Some(offset) = newest {
                if state.committed != Some(offset) || delivered.is_none() {
                    list.add_partition_offset(&self.topic, state.partition, Offset::Offset(offset))
                        .map_err(KafkaError::client("building a commit"))?;
                    if let Some(mut entry) = list.find_partition(&self.topic, state.partition) {
                        entry.set_metadata(self.owner.as_str());
                    }
                    marks
                        .add_partition_offset(&self.topic, state.partition, Offset::Offset(i64::try_from(mark).unwrap_or(i64::MAX)))
                        .map_err(KafkaError::client("building a commit"))?;
                    updated.push((index, offset));
                }
            }
        }
        let commit_marks = || -> Result<(), KafkaError> {
            if marks.count() > 0 {
                self.marks
                    .commit(&marks, CommitMode::Sync)
                    .map_err(KafkaError::client(format!("committing delivered-before marks of `{}`", self.topic)))?;
            }
            Ok(())
        };
        // While running, the mark goes first (synchronously): offsets are never committed past a
        // mark not yet stored, and a failure between the two leaves a newer mark beside older
        // offsets, which only drops outputs that were delivered. At a clean end the offsets go
        // first: mark 0 beside older offsets would make a restart re-send what was delivered,
        // whereas the new offsets beside the old mark replay nothing.
        if delivered.is_some() {
            commit_marks()?;
        }
        if list.count() > 0 {
            consumer.commit(&list, mode).map_err(KafkaError::client(format!("committing offsets of `{}`", self.topic)))?;
            for (index, offset) in updated {
                partitions[index].committed = Some(offset);
            }
        }
        if delivered.is_none() {
            commit_marks()?;
        }
        Ok(list.count() > 0)
    }
}

/// A bounded record of `(time, offset)` points, oldest first, as a partition or key is read.
/// Every point is offered; past `capacity` kept points, every other one is dropped and only
/// every second offered point is kept from then on (the stride doubles), so the points stay
/// evenly spread over what was read, never denser at the newest end. The oldest kept point and
/// the newest offered one are always there. Dropping points only ever moves a commit earlier.
#[derive(Debug)]
pub(crate) struct Trail {
    kept: VecDeque<(EventTime, i64)>,
    /// The newest point offered (also in `kept` when it was sampled).
    newest: Option<(EventTime, i64)>,
    capacity: usize,
    stride: u32,
    skipped: u32,
}

impl Trail {
    pub(crate) fn new(capacity: usize) -> Trail {
        Trail { kept: VecDeque::new(), newest: None, capacity: capacity.max(2), stride: 1, skipped: 0 }
    }

    pub(crate) fn push(&mut self, point: (EventTime, i64)) {
        self.newest = Some(point);
        self.skipped += 1;
        if self.skipped < self.stride && !self.kept.is_empty() {
            return;
        }
        self.skipped = 0;
        self.kept.push_back(point);
        if self.kept.len() > self.capacity {
            self.kept = self.kept.iter().step_by(2).copied().collect();
            self.stride = self.stride.saturating_mul(2);
        }
    }

    pub(crate) fn newest(&self) -> Option<(EventTime, i64)> {
        self.newest
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.len() + usize::from(self.newest.is_some() && self.kept.back() != self.newest.as_ref())
    }

    fn front(&self) -> Option<(EventTime, i64)> {
        self.kept.front().copied().or(self.newest)
    }

    fn second(&self) -> Option<(EventTime, i64)> {
        self.kept.get(1).copied().or_else(|| (self.kept.len() == 1 && self.kept.back() != self.newest.as_ref()).then_some(self.newest).flatten())
    }

    fn pop_front(&mut self) -> Option<(EventTime, i64)> {
        let point = self.kept.pop_front().or_else(|| self.newest.take());
        if self.kept.is_empty() && point == self.newest {
            self.newest = None;
        }
        // Fewer points left: sample more densely again.
        while self.stride > 1 && self.kept.len() * 4 < self.capacity {
            self.stride /= 2;
        }
        point
    }

    /// Removes the leading points `done` accepts; returns the last one removed.
    pub(crate) fn pop_while(&mut self, done: impl Fn(&(EventTime, i64)) -> bool) -> Option<(EventTime, i64)> {
        let mut last = None;
        while self.front().is_some_and(|p| done(&p)) {
            last = self.pop_front();
        }
        last
    }

    /// Removes the leading points `done` accepts except the last of them, which becomes the front.
    fn pop_all_but_last(&mut self, done: impl Fn(&(EventTime, i64)) -> bool) {
        while self.second().is_some_and(|p| done(&p)) {
            self.pop_front();
        }
    }
}

/// Points kept per key between commits (a resume point is at most 1/64 of the span since the
/// last commit earlier than it could be).
const KEY_TRAIL: usize = 64;

/// Per key of one partition, its records read since the last commit: `(time, offset)`. The
/// front is the newest known record older than the last mark (or the key's first record in
/// this run).
#[derive(Debug, Default)]
pub(crate) struct KeyTrails {
    trails: HashMap<Box<str>, Trail, foldhash::fast::RandomState>,
}

impl KeyTrails {
    /// Notes that the record at `offset` keyed `key` (its [`RecordKey`], not its Kafka key)
    /// carries event time `time`. Returns whether `key` had no trail here yet.
    ///
    /// [`RecordKey`]: pitwall_dataflows::records::RecordKey
    pub(crate) fn read(&mut self, key: &str, time: EventTime, offset: i64) -> bool {
        let (trail, new) = match self.trails.get_mut(key) {
            Some(trail) => (trail, false),
            None => (self.trails.entry(key.into()).or_insert_with(|| Trail::new(KEY_TRAIL)), true),
        };
        trail.push((time, offset));
        new
    }

    /// The offset to commit instead of `passed` (the offset after the newest record older than
    /// `mark`): the earliest, over keys with a record at or after `passed`, of the key's newest
    /// known record older than its bound: `mark`, or the key's hold if `key_hold` names an
    /// earlier one (a key whose outputs depend on records the probe no longer waits for). Forgets
    /// what no later commit can need: per key, records older than that one, and keys with
    /// nothing at or after the returned offset.
    pub(crate) fn resume_at(&mut self, passed: i64, mark: EventTime, key_hold: impl Fn(&str) -> Option<EventTime>) -> i64 {
        let mut resume = passed;
        for (key, trail) in self.trails.iter_mut() {
            let bound = key_hold(key).map_or(mark, |hold| hold.min(mark));
            trail.pop_all_but_last(|(time, _)| *time < bound);
            let (Some((time, offset)), Some((_, newest))) = (trail.front(), trail.newest()) else { continue };
            if time < bound && newest >= passed {
                resume = resume.min(offset);
            }
        }
        self.trails.retain(|_, trail| trail.newest().is_some_and(|(_, newest)| newest >= resume));
        resume
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.trails.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splitmix64: a deterministic stream for the model test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    #[test]
    fn a_trail_stays_evenly_spread_and_keeps_the_oldest_and_newest_points_under_continuous_load() {
        let mut trail = Trail::new(64);
        for offset in 0..100_000_i64 {
            trail.push((offset as u64 * 10, offset + 1));
        }
        assert!(trail.len() <= 65);
        assert_eq!(trail.front(), Some((0, 1)), "the next checkpoint to commit is never dropped");
        assert_eq!(trail.newest(), Some((999_990, 100_000)));
        let points: Vec<(EventTime, i64)> = trail.kept.iter().copied().collect();
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        // Evenly spread: no gap between kept points is more than twice another (a gap that
        // halves on every thinning would leave the oldest points thousands of times sparser).
        let gaps: Vec<i64> = points.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert!(gaps.iter().max().unwrap() <= &(2 * gaps.iter().min().unwrap()), "{gaps:?}");
        // Passing the first half removes it and returns the last point passed.
        assert_eq!(trail.pop_while(|(time, _)| *time < 500_000).map(|(t, _)| t < 500_000), Some(true));
        assert!(trail.front().is_some_and(|(time, _)| time >= 500_000));
        assert_eq!(trail.pop_while(|_| true), Some((999_990, 100_000)), "the newest point is always there to pass");
        assert_eq!(trail.len(), 0);
    }

    #[test]
    fn a_key_whose_boundary_lies_after_the_mark_pulls_the_resume_point_back() {
        // Offsets 0..: A at 0, B at 10, A at 20, B at 30, A at 34, A at 40, B at 45 (ms). The
        // mark is 35: the commit rule alone resumes at offset 5 (A at 40), whose replay of B
        // would start at 45, after B's record at 30 (offset 3).
        let mut trails = KeyTrails::default();
        for (offset, (key, time)) in [("A", 0), ("B", 10), ("A", 20), ("B", 30), ("A", 34), ("A", 40), ("B", 45)].into_iter().enumerate() {
            trails.read(key, time, offset as i64);
        }
        assert_eq!(trails.resume_at(5, 35, |_| None), 3, "B's record at 30 is replayed (A's at 34 would be enough for A)");
        // A later mark past everything read: no key has a record at or after the commit rule's offset.
        trails.read("B", 50, 7);
        assert_eq!(trails.resume_at(8, 60, |_| None), 8);
        assert_eq!(trails.keys(), 0, "keys with nothing at or after the resume point are forgotten");
    }

    #[test]
    fn a_key_with_nothing_older_than_the_mark_does_not_hold_the_commit() {
        let mut trails = KeyTrails::default();
        trails.read("A", 100, 0);
        trails.read("B", 200, 1);
        trails.read("A", 300, 2);
        assert_eq!(trails.resume_at(1, 150, |_| None), 0, "A's record at 100 is older than the mark");
        // The mark passes B's record: A's newest older record is still the one at offset 0, and A
        // was read again after the commit rule's offset, so its replay must start there.
        assert_eq!(trails.resume_at(2, 250, |_| None), 0);
    }

    /// A key whose outputs depend on records since a hold before the mark (a condition the
    /// anomaly rules still remember) keeps its replay starting before the hold: the commit stops
    /// at its newest record older than the hold, whatever the mark, until the hold is gone;
    /// the other keys resume by the mark as before.
    #[test]
    fn a_key_held_before_the_mark_keeps_its_replay_before_the_hold() {
        let mut trails = KeyTrails::default();
        // A every 10 ms from 0, B likewise at +5, each its own offsets in one partition.
        let mut offset = 0;
        for time in (0..1_000).step_by(10) {
            trails.read("A", time, offset);
            trails.read("B", time + 5, offset + 1);
            offset += 2;
        }
        let held = |key: &str| (key == "A").then_some(300);
        // A's record at even offset o has time o * 5: "one of A's records older than 300, the
        // newest the thinned trail kept" (a trail keeps 64 points, so within a few records).
        let a_before = |resume: i64, bound: i64| resume % 2 == 0 && resume * 5 < bound && resume * 5 >= bound - 60;
        // The mark is at 900 and the rule alone would commit at offset 180 (time 900).
        let resume = trails.resume_at(180, 900, held);
        assert!(a_before(resume, 300), "A's replay starts before its hold: {resume}");
        // Later, more read, A's hold still there: the commit does not pass it.
        for time in (1_000..2_000).step_by(10) {
            trails.read("A", time, offset);
            trails.read("B", time + 5, offset + 1);
            offset += 2;
        }
        assert_eq!(trails.resume_at(380, 1_900, held), resume, "the held key's resume point stays");
        // The hold gone: the commit moves on to the mark.
        let moved = trails.resume_at(380, 1_900, |_| None);
        assert!(a_before(moved, 1_900), "then A resumes by the mark: {moved}");
    }

    /// Model check: after any sequence of reads and commits, the chosen offset replays every
    /// key's first record after it from before the mark, for every key that has one older than
    /// the mark among the records read since the previous resume point.
    #[test]
    fn every_key_replayed_from_the_resume_point_starts_before_the_mark() {
        let mut rng = Rng(7);
        for round in 0..200 {
            let keys = 1 + rng.below(6);
            let mut trails = KeyTrails::default();
            let mut log: Vec<(u64, EventTime)> = Vec::new();
            let mut clocks = vec![0_u64; keys as usize];
            let (mut mark, mut resumed) = (0_u64, 0_i64);
            for _ in 0..400 {
                let key = rng.below(keys);
                clocks[key as usize] += 1 + rng.below(40);
                let time = clocks[key as usize];
                trails.read(&key.to_string(), time, log.len() as i64);
                log.push((key, time));
                if rng.below(25) == 0 {
                    // The probe moved: the commit rule's offset is after the last record older than
                    // the mark in the partition's running maximum (as checkpoints are kept).
                    mark = mark.max(rng.below(clocks.iter().copied().min().unwrap() + 1));
                    let mut running = 0;
                    let passed = log
                        .iter()
                        .position(|(_, t)| {
                            running = running.max(*t);
                            running >= mark
                        })
                        .unwrap_or(log.len()) as i64;
                    let resume = trails.resume_at(passed, mark, |_| None).max(resumed);
                    assert!(resume <= passed, "round {round}: never after the commit rule's offset");
                    for key in 0..keys {
                        let since_run: Vec<&(u64, EventTime)> = log[resumed as usize..].iter().filter(|(k, _)| *k == key).collect();
                        let first_replayed = log[resume as usize..].iter().find(|(k, _)| *k == key);
                        if let (Some((_, t)), Some((_, oldest))) = (first_replayed, since_run.first()) {
                            assert!(
                                *t < mark || *oldest >= mark,
                                "round {round}: key {key} would replay from {t}, not before the mark {mark}, though it had a record at {oldest}"
                            );
                        }
                    }
                    resumed = resume;
                }
            }
        }
    }
}
