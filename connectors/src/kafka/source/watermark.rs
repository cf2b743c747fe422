//! The watermark: where a worker's source puts its capability, and the board on which the
//! workers of a topic (in every process) see each other's watermarks.
//!
//! A worker's watermark is the minimum over its active partitions of (newest event time -
//! allowed lateness). A partition stops holding it back when the broker reports it caught up
//! and it stays silent for `eof_grace`, or after `idle_timeout` of silence whatever the broker
//! says; a paused partition (read-ahead) is never idle. A worker whose partitions never carried
//! a record follows the other workers on the [`WatermarkBoard`], and the board is what the
//! read-ahead bound measures "the slowest" against. [`BoardShare`] broadcasts each worker's entry
//! to the other processes of a cluster through timely.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitwall_dataflows::records::EventTime;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::input::Handle as InputHandle;

use super::partition::PartitionState;
use super::SourceConfig;

/// The watermarks of one topic's sources, by (global) worker: `(watermark, active)`. This
/// process's workers report directly; the other processes' workers arrive through
/// [`WatermarkBoard::post_remote`] (the job broadcasts each worker's entry through timely).
#[derive(Clone, Debug, Default)]
pub struct WatermarkBoard(Arc<Mutex<BoardEntries>>);

#[derive(Debug, Default)]
struct BoardEntries {
    entries: BTreeMap<usize, (EventTime, bool)>,
    /// Workers of this process: their own reports win over broadcast copies.
    local: BTreeSet<usize>,
    /// Per record key (a driver, a video id), the partitions this process's workers read it
    /// from: where its outputs' delivered-before marks are (see `SourceHandle::marks_by_key`).
    keys: HashMap<Box<str>, Vec<i32>>,
}

impl WatermarkBoard {
    pub(super) fn report(&self, worker: usize, watermark: EventTime, active: bool) {
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

    /// Notes that a record keyed `key` was read from `partition` (by a worker of this process).
    pub(super) fn note_key(&self, key: &str, partition: i32) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match board.keys.get_mut(key) {
            Some(partitions) if !partitions.contains(&partition) => partitions.push(partition),
            Some(_) => {}
            None => {
                board.keys.insert(key.into(), vec![partition]);
            }
        }
    }

    /// The partitions this process read records keyed `key` from (empty: none yet).
    pub(super) fn key_partitions(&self, key: &str) -> Vec<i32> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.keys.get(key).cloned().unwrap_or_default()
    }

    /// The slowest watermark of any worker with active partitions, this one included.
    pub(super) fn slowest_active(&self) -> Option<EventTime> {
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

/// What a worker's watermark does next.
pub(super) enum WatermarkStep {
    To(EventTime),
    Finished,
}

/// This worker's next watermark, from its partitions (and the board), never before `current`.
pub(super) fn next_watermark(partitions: &[PartitionState], config: &SourceConfig, worker: usize, current: EventTime) -> WatermarkStep {
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

/// The boards of the job's two source topics, shared by the workers of one process.
#[derive(Clone, Debug, Default)]
pub struct TopicBoards {
    pub telemetry: WatermarkBoard,
    pub video: WatermarkBoard,
}

/// How often each worker shares its watermark-board entries with the other processes.
const BOARD_INTERVAL: Duration = Duration::from_millis(100);

/// One board entry on the wire: (board: 0 telemetry, 1 video; worker; watermark; active).
type BoardPost = (u8, usize, u64, bool);

/// Shares every worker's watermark-board entries with every process (a timely broadcast), so a
/// worker whose partitions never carried a record follows the other workers of the whole
/// cluster, not only of its process: a process whose partitions all stay empty no longer holds
/// every live window open.
pub struct BoardShare {
    input: Option<InputHandle<u64, CapacityContainerBuilder<Vec<BoardPost>>>>,
    boards: [WatermarkBoard; 2],
    round: u64,
    last: Instant,
}

impl BoardShare {
    pub fn build(worker: &mut timely::worker::Worker, boards: &TopicBoards) -> BoardShare {
        use timely::dataflow::operators::vec::Broadcast;
        use timely::dataflow::operators::{Input, Inspect};
        let boards = [boards.telemetry.clone(), boards.video.clone()];
        let receiving = boards.clone();
        let input = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, posts) = scope.new_input::<Vec<BoardPost>>();
            posts.broadcast().inspect(move |(board, worker, watermark, active)| {
                receiving[usize::from(*board).min(1)].post_remote(*worker, *watermark, *active);
            });
            input
        });
        BoardShare { input: Some(input), boards, round: 0, last: Instant::now() }
    }

    /// Sends this worker's entries, at most every [`BOARD_INTERVAL`].
    pub fn tick(&mut self, worker: usize) {
        let Some(input) = self.input.as_mut() else { return };
        if self.last.elapsed() < BOARD_INTERVAL {
            return;
        }
        self.last = Instant::now();
        for (index, board) in self.boards.iter().enumerate() {
            if let Some((watermark, active)) = board.entry(worker) {
                input.send((index as u8, worker, watermark, active));
            }
        }
        self.round += 1;
        input.advance_to(self.round);
    }

    /// Closes the input so the sharing dataflow can finish with the job.
    pub fn close(&mut self) {
        self.input = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::partition::fixtures::{at, partition};
    use super::*;
    use crate::kafka::KafkaConfig;

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
