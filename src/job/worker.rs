//! One worker's loop: builds the dataflows (once with static assignment, once per group lease
//! with group membership), steps them, hands partitions over when the group rebalances, keeps
//! the metrics and adds up the report.
//!
//! Under group membership (`connectors/src/kafka/group.rs`) each pipeline's dataflow lives as
//! long as one lease. The process's leases come in one order ([`AssignmentLog`]) and every worker
//! builds a dataflow per lease in that order. When a lease is revoked its sources stop reading;
//! each worker lets what was read reach the sinks (the probe after them stops moving for
//! [`SETTLE_QUIET`], at most [`SETTLE_MAX`]), commits what the probe passed with its mark,
//! acknowledges, and once every worker has, drops the dataflow without flushing it: its open
//! windows are rebuilt whole by the partitions' next owner from the committed offsets.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use pitwall_connectors::kafka::group::{AssignmentLog, ExitVerdict, Lease, Membership};
use pitwall_connectors::kafka::sink::{KafkaProducer, SinkHandle};
use pitwall_connectors::kafka::source::{BoardShare, SourceHandle, SourceStats};
use pitwall_dataflows::keyed::StateGauge;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

use super::metrics::{refresh_worker_metrics, JobMetrics, WorkCounts, METRICS_INTERVAL};
use super::report::WorkerReport;
use super::telemetry::{build_telemetry, feed_queries, TelemetryParts};
use super::video::{build_video, VideoParts, VideoReport};
use super::{JobConfig, Pipeline, ProcessShared};

/// The slot of the telemetry membership in the [`AssignmentLog`].
pub(crate) const SLOT_TELEMETRY: usize = 0;
/// The slot of the video membership in the [`AssignmentLog`].
pub(crate) const SLOT_VIDEO: usize = 1;

/// A hand-over commits once the probe after the sinks has stayed put this long...
const SETTLE_QUIET: Duration = Duration::from_millis(100);
/// ...or this long after the revocation, whichever comes first.
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// A stopping job waits at most this long for uploads under way (an S3 outage retries forever)
/// before it commits what was delivered and leaves the rest to the next run.
const STOP_MAX: Duration = Duration::from_secs(5);

/// How long a parked worker sleeps when nothing activates it.
const PARK: Duration = Duration::from_millis(20);

/// This process's group memberships, and the order their leases came in.
#[derive(Clone, Default)]
pub(crate) struct Memberships {
    pub(crate) log: AssignmentLog,
    pub(crate) telemetry: Option<Arc<Membership>>,
    pub(crate) video: Option<Arc<Membership>>,
}

impl Memberships {
    fn all(&self) -> impl Iterator<Item = &Arc<Membership>> {
        self.telemetry.iter().chain(self.video.iter())
    }
}

/// What the worker loop needs of a built pipeline.
trait Parts {
    fn probe(&self) -> &ProbeHandle<u64>;
    fn source(&self) -> &SourceHandle;
    fn sinks(&self) -> Vec<(&'static str, SinkHandle)>;
    fn state(&self) -> &[(&'static str, StateGauge)] {
        &[]
    }
    fn refresh(&self, work: &mut WorkCounts, metrics: &JobMetrics);
    /// Once the input has ended: how much work this worker holds that the run will not finish
    /// (videos in flight; `None` while the input goes on). Held work anywhere keeps the
    /// dataflow from ever being done: it settles instead (see [`Slot::settle_stopped`]).
    fn held_at_end(&self) -> Option<usize> {
        None
    }
    /// Whether this worker has work under way that may still finish (an upload).
    fn busy(&self) -> bool {
        false
    }
    /// Adds what this dataflow did to the worker's report.
    fn add_to(&self, report: &mut WorkerReport);
    /// [`Parts::add_to`], and what every sink had refused for good.
    fn add_all_to(&self, report: &mut WorkerReport) {
        self.add_to(report);
        report.undeliverable += self.sinks().iter().map(|(_, sink)| sink.undeliverable()).sum::<u64>();
    }
}

impl Parts for TelemetryParts {
    fn probe(&self) -> &ProbeHandle<u64> {
        &self.probe
    }
    fn source(&self) -> &SourceHandle {
        &self.source
    }
    fn sinks(&self) -> Vec<(&'static str, SinkHandle)> {
        self.sinks.labelled()
    }
    fn state(&self) -> &[(&'static str, StateGauge)] {
        &self.state
    }
    fn refresh(&self, work: &mut WorkCounts, metrics: &JobMetrics) {
        work.refresh(metrics, self.inference.as_ref(), None);
        work.refresh_duplicates(metrics, self.duplicates.get());
    }
    fn add_to(&self, report: &mut WorkerReport) {
        add_stats(&mut report.source, &self.source.stats());
        report.alerts += self.sinks.alerts.delivered();
        report.windows += self.sinks.windows.delivered();
        report.already_delivered += self.already_delivered.iter().map(|c| c.get()).sum::<u64>();
        report.predictions += self.sinks.predictions.as_ref().map_or(0, SinkHandle::delivered);
        report.held_peak = report.held_peak.max(self.ordering.get().peak_keys as u64);
    }
}

impl Parts for VideoParts {
    fn probe(&self) -> &ProbeHandle<u64> {
        &self.probe
    }
    fn source(&self) -> &SourceHandle {
        &self.source
    }
    fn sinks(&self) -> Vec<(&'static str, SinkHandle)> {
        self.sinks.labelled()
    }
    fn refresh(&self, work: &mut WorkCounts, metrics: &JobMetrics) {
        work.refresh(metrics, None, Some((&self.inference, &self.uploads)));
    }
    fn held_at_end(&self) -> Option<usize> {
        self.assembly.exhausted.get().then(|| self.assembly.unfinished.get())
    }
    fn busy(&self) -> bool {
        self.uploads.in_flight.load(Ordering::Relaxed) > 0
    }
    fn add_to(&self, report: &mut WorkerReport) {
        let (stats, video) = report.video.get_or_insert_with(Default::default);
        add_stats(stats, &self.source.stats());
        let now = self.report();
        *video = VideoReport {
            frames: video.frames + now.frames,
            unscored: video.unscored + now.unscored,
            detections: video.detections + now.detections,
            videos: video.videos + now.videos,
            dead_letters: video.dead_letters + now.dead_letters,
            stored: video.stored + now.stored,
            store_failures: video.store_failures + now.store_failures,
            unfinished: video.unfinished + now.unfinished,
        };
        report.already_delivered += self.stored_before.get();
    }
}

/// Adds `more` to `total`.
fn add_stats(total: &mut SourceStats, more: &SourceStats) {
    total.messages += more.messages;
    total.records += more.records;
    total.dead_letters += more.dead_letters;
    total.late += more.late;
    total.bytes += more.bytes;
    total.commits += more.commits;
    total.stalls += more.stalls;
    total.skipped_offsets += more.skipped_offsets;
}

/// A probe settling before a commit (a revoked lease, or an input ended with work held): when
/// it started, and since when its frontier has stayed where it is.
struct Settling {
    started: Instant,
    frontier: Option<u64>,
    since: Instant,
}

impl Settling {
    /// Records `frontier` in `slot` (starting it if empty) and returns the settling so far.
    fn observe(slot: &mut Option<Settling>, frontier: Option<u64>, now: Instant) -> &Settling {
        let settling = slot.get_or_insert(Settling { started: now, frontier, since: now });
        if settling.frontier != frontier {
            (settling.frontier, settling.since) = (frontier, now);
        }
        settling
    }

    /// Whether the frontier has stayed put for [`SETTLE_QUIET`].
    fn quiet(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= SETTLE_QUIET
    }
}

/// One built pipeline dataflow and what the worker keeps about it.
struct Slot<P> {
    parts: P,
    /// Its timely dataflow index (to drop it when its lease ends).
    dataflow: usize,
    lease: Option<Arc<Lease>>,
    settling: Option<Settling>,
    /// Its probe finished and everything read was committed, or (`left_unfinished`) it settled
    /// with work held at the end of its input and committed what was delivered.
    finished: bool,
    /// Ended with work held (videos in flight): only what was delivered is committed, and the
    /// clean stop's commit of everything read is skipped.
    left_unfinished: bool,
    /// When the input was first seen ended before the probe was done.
    held_since: Option<Instant>,
    /// The probe settling after the input ended with work held.
    stop_settling: Option<Settling>,
    /// This worker's part of the process's count of held work (see [`Slot::settle_stopped`]).
    held_reported: usize,
    work: WorkCounts,
    reported: Vec<(u64, u64)>,
}

impl<P: Parts> Slot<P> {
    fn new(parts: P, dataflow: usize, lease: Option<Arc<Lease>>) -> Slot<P> {
        Slot {
            parts,
            dataflow,
            lease,
            settling: None,
            finished: false,
            left_unfinished: false,
            held_since: None,
            stop_settling: None,
            held_reported: 0,
            work: WorkCounts::default(),
            reported: Vec::new(),
        }
    }

    /// Once the probe is done: commits everything read (a clean end), once.
    fn finish_if_done(&mut self) -> Result<()> {
        if !self.finished && self.parts.probe().done() {
            self.commit_all()?;
            self.finished = true;
        }
        Ok(())
    }

    /// When the input ended with work held (videos in flight, see `AssemblyState`), the probe
    /// is never done. Once some worker of this process holds work (`held`: how much, over the
    /// process's workers; or, for work held in another process, after [`STOP_MAX`]), this
    /// worker's uploads are over (at most [`STOP_MAX`] when stopping) and the probe has stayed
    /// put for [`SETTLE_QUIET`], commits what the probe passed with its mark, and counts as
    /// finished. What was held stays uncommitted: the next run reads it again whole.
    fn settle_stopped(&mut self, stopping: bool, held: &AtomicUsize) {
        let Some(own) = self.parts.held_at_end() else { return };
        // Added before the old share is taken off: the count never goes below zero.
        held.fetch_add(own, Ordering::Relaxed);
        held.fetch_sub(std::mem::replace(&mut self.held_reported, own), Ordering::Relaxed);
        if self.finished || self.parts.probe().done() {
            return;
        }
        let now = Instant::now();
        let waited = now.duration_since(*self.held_since.get_or_insert(now));
        if held.load(Ordering::Relaxed) == 0 && waited < STOP_MAX {
            return;
        }
        if self.parts.busy() && !(stopping && waited >= STOP_MAX) {
            return;
        }
        let frontier = self.parts.probe().with_frontier(|f| f.first().copied());
        if !Settling::observe(&mut self.stop_settling, frontier, now).quiet(now) {
            return;
        }
        if let Err(error) = self.parts.source().commit_delivered() {
            tracing::warn!(%error, "committing what was delivered failed: the next run replays from the last commit");
        }
        tracing::info!(delivered_before = ?frontier, "input ended with work held: committed what was delivered, the rest stays for the next run");
        (self.finished, self.left_unfinished) = (true, true);
    }

    /// Commits everything read, unless the lease was handed over (its partitions' offsets are
    /// their next owner's to commit now) or work was left held at the end (see
    /// [`Slot::settle_stopped`]).
    /// Under a lease a failure (a rebalance starting as the instance stops) is a warning: the
    /// partitions' next owner replays from the last commit and the marks keep it from re-sending
    /// what was delivered.
    fn commit_all(&self) -> Result<()> {
        if self.left_unfinished {
            return Ok(());
        }
        match &self.lease {
            None => Ok(self.parts.source().commit_all()?),
            Some(lease) if !lease.valid() => Ok(()),
            Some(lease) => {
                if let Err(error) = self.parts.source().commit_all() {
                    tracing::warn!(%error, generation = lease.generation, "the final commit failed: the partitions' next owner replays from the last commit");
                }
                Ok(())
            }
        }
    }

    /// Moves a revocation of this slot's lease along: settle, commit, acknowledge.
    fn hand_over(&mut self, worker: usize) {
        let Some(lease) = &self.lease else { return };
        if !lease.membership.revoking(lease.generation, worker) {
            self.settling = None;
            return;
        }
        if lease.membership.lost() {
            // The group moved on without this instance: committing could overwrite the new
            // owner's progress. Stop; the next owner replays from the last commit.
            lease.membership.acknowledge(worker);
            return;
        }
        let frontier = self.parts.probe().with_frontier(|f| f.first().copied());
        let now = Instant::now();
        let settling = Settling::observe(&mut self.settling, frontier, now);
        if frontier.is_none() || settling.quiet(now) || now.duration_since(settling.started) >= SETTLE_MAX {
            if let Err(error) = self.parts.source().commit_delivered() {
                tracing::warn!(error = %error, "committing at a hand-over failed: the partitions' next owner replays from the last commit");
            }
            tracing::info!(worker, generation = lease.generation, delivered_before = ?frontier, "hand-over committed");
            lease.membership.acknowledge(worker);
            self.settling = None;
        }
    }

    /// Whether its lease is over (revoked and acknowledged by every worker, or superseded).
    fn ended(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.membership.ended(l.generation))
    }

    fn refresh(&mut self, metrics: &JobMetrics, worker: &str) {
        refresh_worker_metrics(metrics, worker, self.parts.state(), &self.parts.sinks(), &mut self.reported);
        self.parts.refresh(&mut self.work, metrics);
    }
}

fn lease_of<P: Parts>(slot: &Option<Slot<P>>) -> Option<&Lease> {
    slot.as_ref().and_then(|s| s.lease.as_deref())
}

/// With `--exit-at-end` under group membership, once every slot of this worker read its lease
/// to the end: whether the group has read the whole of each topic and the worker may stop (the
/// same answer for every worker of the process, see `Membership::at_end`); an error when the
/// group cannot be read to the end.
fn group_read_to_end(leases: [Option<&Lease>; 2], worker: usize) -> Result<bool> {
    let mut exit = true;
    // Every lease is told, not only up to the first that waits: each membership judges its own.
    for lease in leases.into_iter().flatten() {
        match lease.membership.at_end(worker, lease.generation) {
            ExitVerdict::Exit => {}
            ExitVerdict::Wait => exit = false,
            ExitVerdict::Fail(error) => anyhow::bail!("the group did not read `{}` to its end: {error}", lease.membership.topic()),
        }
    }
    Ok(exit)
}

/// Drops a slot's dataflow (its lease ended), adding what it did to the report first.
fn retire<P: Parts>(slot: &mut Option<Slot<P>>, worker: &mut timely::worker::Worker, report: &mut WorkerReport, metrics: &JobMetrics) {
    if let Some(mut old) = slot.take() {
        old.refresh(metrics, &worker.index().to_string());
        old.parts.add_all_to(report);
        worker.drop_dataflow(old.dataflow);
    }
}

pub(crate) fn run_worker(
    worker: &mut timely::worker::Worker,
    config: &JobConfig,
    shared: ProcessShared<'_>,
    shutdown: Arc<AtomicBool>,
) -> Result<WorkerReport> {
    let producer = KafkaProducer::new(&config.kafka)?.with_dead_letters(&config.dataflow.dlq_topic);
    let index = worker.index();
    let worker_label = index.to_string();
    let mut report = WorkerReport::default();
    let (runs_telemetry, runs_video) = (config.runs(Pipeline::Telemetry), shared.store.is_some());
    let build_telemetry_slot = |worker: &mut timely::worker::Worker, lease: Option<Arc<Lease>>| -> Result<Slot<TelemetryParts>> {
        let dataflow = worker.next_dataflow_index();
        let parts = build_telemetry(worker, config, &producer, &shared, shutdown.clone(), lease.clone())?;
        shared.sources.lock().expect("health list lock").push(parts.source.health());
        Ok(Slot::new(parts, dataflow, lease))
    };
    let build_video_slot = |worker: &mut timely::worker::Worker, lease: Option<Arc<Lease>>| -> Result<Option<Slot<VideoParts>>> {
        let Some(store) = shared.store.clone() else { return Ok(None) };
        let dataflow = worker.next_dataflow_index();
        let parts = build_video(worker, config, &shared, store, &producer, shutdown.clone(), lease.clone())?;
        shared.sources.lock().expect("health list lock").push(parts.source.health());
        Ok(Some(Slot::new(parts, dataflow, lease)))
    };
    let (mut telemetry, mut video) = match &shared.memberships {
        Some(_) => (None, None),
        None => (if runs_telemetry { Some(build_telemetry_slot(worker, None)?) } else { None }, build_video_slot(worker, None)?),
    };
    let mut board_share = BoardShare::build(worker, &shared.boards);
    let takes_queries = index == 0;
    let mut last_metrics = Instant::now();
    let mut cursor = 0;
    let exit_at_end = config.exit_at_end;
    let mut read_to_end: Option<Instant> = None;
    // An upload refused for good (see `store.rs`): the job stops, and fails with it.
    let mut fatal: Option<String> = None;
    loop {
        if let Some(memberships) = &shared.memberships {
            for (slot, lease) in memberships.log.since(cursor) {
                cursor += 1;
                if slot == SLOT_TELEMETRY {
                    retire(&mut telemetry, worker, &mut report, shared.metrics);
                    let mut built = build_telemetry_slot(worker, Some(lease))?;
                    if let (Some(hub), true, Some(input)) = (&shared.query_hub, takes_queries, built.parts.queries.as_mut()) {
                        // A new dataflow answers every registered query from scratch.
                        hub.restart().into_iter().for_each(|command| command.apply_to(input));
                    }
                    telemetry = Some(built);
                } else {
                    retire(&mut video, worker, &mut report, shared.metrics);
                    video = build_video_slot(worker, Some(lease))?;
                }
            }
        }
        if let Some(slot) = telemetry.as_mut() {
            slot.finish_if_done()?;
            slot.hand_over(index);
        }
        if let (Some(store), None) = (&shared.store, &fatal) {
            if let Some(error) = store.fatal() {
                tracing::error!(%error, "the video pipeline stops: an overlayed video was refused for good");
                shutdown.store(true, Ordering::Relaxed);
                fatal = Some(error);
            }
        }
        if let Some(slot) = video.as_mut() {
            slot.finish_if_done()?;
            slot.settle_stopped(shutdown.load(Ordering::Relaxed), &shared.videos_held);
            slot.hand_over(index);
        }
        if telemetry.as_ref().is_some_and(Slot::ended) {
            retire(&mut telemetry, worker, &mut report, shared.metrics);
        }
        if video.as_ref().is_some_and(Slot::ended) {
            retire(&mut video, worker, &mut report, shared.metrics);
        }
        let finished = |built: bool, slot: Option<bool>| !built || slot.unwrap_or(false);
        let all_finished =
            finished(runs_telemetry, telemetry.as_ref().map(|s| s.finished)) && finished(runs_video, video.as_ref().map(|s| s.finished));
        let done = match &shared.memberships {
            // Static: the dataflows end with the input (exit-at-end) or at shutdown.
            None => all_finished,
            // Group: at shutdown once what was built finished; with exit-at-end once every
            // pipeline's current lease was read to its end; otherwise never.
            Some(_) => {
                let idle = |slot: Option<bool>| slot.unwrap_or(true);
                (shutdown.load(Ordering::Relaxed) && idle(telemetry.as_ref().map(|s| s.finished)) && idle(video.as_ref().map(|s| s.finished)))
                    || (exit_at_end && all_finished && group_read_to_end([lease_of(&telemetry), lease_of(&video)], index)?)
            }
        };
        // The input's end for this worker: what its report's speed counts (the group may take
        // longer to be read to the end).
        read_to_end = if exit_at_end && all_finished { read_to_end.or_else(|| Some(Instant::now())) } else { None };
        if done {
            break;
        }
        if let Some(slot) = telemetry.as_mut() {
            if slot.parts.queries.is_some() {
                feed_queries(&mut slot.parts.queries, &slot.parts.query_clock, shared.query_hub.as_ref(), takes_queries);
            }
        }
        board_share.tick(index);
        worker.step_or_park(Some(PARK));
        if last_metrics.elapsed() >= METRICS_INTERVAL {
            last_metrics = Instant::now();
            refresh_slots(&mut telemetry, &mut video, &shared, &worker_label, index);
        }
    }
    board_share.close();
    refresh_slots(&mut telemetry, &mut video, &shared, &worker_label, index);
    // A clean stop: everything read is delivered; commit it (again: a no-op when nothing moved).
    if let Some(slot) = &telemetry {
        slot.commit_all()?;
    }
    if let Some(slot) = &video {
        slot.commit_all()?;
    }
    producer.flush(Duration::from_secs(30))?;
    if let Some(slot) = &telemetry {
        slot.parts.add_all_to(&mut report);
    }
    if let Some(slot) = &video {
        slot.parts.add_all_to(&mut report);
        // Work held at the end never completes: dropped here, or timely would step it forever.
        if slot.left_unfinished {
            worker.drop_dataflow(slot.dataflow);
        }
    }
    // Revocations no longer wait for this worker: it has committed everything it read.
    for membership in shared.memberships.iter().flat_map(Memberships::all) {
        membership.retire(index);
    }
    report.finished = Some(read_to_end.unwrap_or_else(Instant::now));
    tracing::info!(worker = index, stats = ?report.source, alerts = report.alerts, windows = report.windows, "worker finished");
    if let Some(error) = fatal {
        anyhow::bail!(
            "{error}. Stopped with what was delivered committed: fix the S3 settings (credentials, bucket) and start again, and the videos not stored are read again whole and stored"
        );
    }
    Ok(report)
}

/// Refreshes each slot's metrics, the live view's size (worker 0) and the group gauges (worker 0).
fn refresh_slots(
    telemetry: &mut Option<Slot<TelemetryParts>>,
    video: &mut Option<Slot<VideoParts>>,
    shared: &ProcessShared<'_>,
    worker_label: &str,
    index: usize,
) {
    if let Some(slot) = telemetry.as_mut() {
        slot.refresh(shared.metrics, worker_label);
    }
    if let Some(slot) = video.as_mut() {
        slot.refresh(shared.metrics, worker_label);
    }
    if index != 0 {
        return;
    }
    if let Some(store) = &shared.store {
        shared.metrics.uploads_retrying.set(store.retrying() as i64);
    }
    if let Some(live) = &shared.live {
        for (buffer, points) in live.sizes() {
            shared.metrics.live_points.with_label_values(&[buffer]).set(points as i64);
        }
    }
    for membership in shared.memberships.iter().flat_map(Memberships::all) {
        shared.metrics.refresh_group(membership.topic(), &membership.stats());
    }
}
