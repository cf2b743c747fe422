//! Consumer-group membership: how instances of a job share a topic's partitions.
//!
//! One [`GroupMember`] per process and source topic joins the consumer group with Kafka's
//! group protocol (subscribe, eager rebalancing, the broker's coordinator). The member is also
//! the reader: on every assignment its partitions' queues are split off right away and handed to
//! this process's workers, [`share`] of them each, through a [`Lease`] (one per assignment, its
//! *generation*). The job builds a fresh dataflow per generation, so a partition that moves
//! starts from its committed offset in a dataflow whose watermark starts from nothing: none of
//! its records is late because of the move.
//!
//! When the group rebalances, librdkafka calls the member (on its own thread) before giving the
//! partitions up. The member marks the lease revoked (its sources stop reading at once) and waits,
//! up to [`HANDOVER_TIMEOUT`], until every local worker has acknowledged: each lets what it read
//! flow to the sinks, commits what the probe after them passed (offsets and delivered-before
//! marks, exactly as a restart expects them) and acknowledges ([`Membership::acknowledge`]).
//! Only then does librdkafka give the partitions up; their next owner resumes from those commits
//! and drops the outputs it re-derives that were delivered before the marks. A lost member
//! (killed) commits nothing more: its partitions resume from its last commit, as after a crash.
//!
//! Offsets are committed through the member (`Lease::committer`), carrying its group generation
//! as Kafka's coordinator requires of a group with members.
//!
//! | item | what it owns |
//! | --- | --- |
//! | [`GroupMember`] | the member consumer and the thread that polls it (rebalances, heartbeats' deadline) |
//! | [`Membership`] | the state the member and the workers share: generation, lease, revocation, acknowledgements, counters |
//! | [`Lease`] | one assignment: its partitions, their queues (taken once by their worker) and committed offsets |
//! | [`StaticAnnouncement`] | a static job's paused member of [`static_group`], so that group instances see it and refuse to start |

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{Consumer, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::{Reader, ReaderContext, METADATA_TIMEOUT};
use super::source::WatermarkBoard;
use super::{KafkaConfig, KafkaError};

/// The group session timeout unless configured (`--session-timeout-ms`): how long the broker waits
/// for a silent member (a killed instance) before its partitions go to the others. librdkafka's
/// default is 45 s; 6 s keeps a lost instance's hand-over well under 10 s while tolerating a few
/// missed heartbeats (sent every third of it).
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6_000;

/// Longest a revocation waits for this process's workers to stop reading and commit.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the member thread polls its consumer (rebalance callbacks run inside the poll).
const MEMBER_POLL: Duration = Duration::from_millis(50);

/// How often an instance at the end of its lease looks at the group again (see [`ExitJudge`]).
const EXIT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Added to the session timeout: how long a member must stay listed to count as alive.
const SESSION_MARGIN: Duration = Duration::from_secs(2);
/// The most times an instance at the end rejoins the group for partitions nobody holds.
const MAX_REJOINS: u32 = 3;
/// The least an instance at the end waits for the group before it fails.
const EXIT_WAIT_MIN: Duration = Duration::from_secs(60);

/// How often (ms) a group member re-reads its topic's partition count (see `GroupMember::join`).
pub const TOPIC_REFRESH_MS: &str = "2000";

/// How one process joins a group for one topic.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub group: String,
    /// Workers of this process: each gets its [`share`] of every assignment.
    pub workers: usize,
    pub session_timeout_ms: u64,
    /// Shown by `group describe` and the broker's tools: which instance holds what.
    pub client_id: String,
}

/// One assignment of the group to this process: what its workers read until it is revoked.
pub struct Lease {
    pub generation: u64,
    /// Every partition assigned to this process, sorted.
    pub partitions: Vec<i32>,
    /// When the assignment came.
    pub granted: Instant,
    /// The member consumer: offsets are committed through it.
    pub consumer: Arc<Reader>,
    queues: Mutex<HashMap<i32, PartitionQueue<ReaderContext>>>,
    committed: HashMap<i32, i64>,
    /// The watermark board of this generation's sources (a new dataflow starts from nothing:
    /// an older generation's watermarks must not carry over).
    pub board: WatermarkBoard,
    pub membership: Arc<Membership>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("generation", &self.generation).field("partitions", &self.partitions).finish()
    }
}

impl Lease {
    /// Takes the queue of `partition` (once: its worker reads it).
    pub(crate) fn take_queue(&self, partition: i32) -> Option<PartitionQueue<ReaderContext>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition)
    }

    /// The committed offset of `partition` when it was assigned (`None`: nothing committed).
    pub(crate) fn committed(&self, partition: i32) -> Option<i64> {
        self.committed.get(&partition).copied()
    }

    /// Whether this lease still holds: not revoked, not superseded.
    pub fn valid(&self) -> bool {
        self.membership.holds(self.generation)
    }
}

/// The partitions of `partitions` (sorted) that local worker `worker` of `workers` reads.
pub fn share(partitions: &[i32], worker: usize, workers: usize) -> Vec<i32> {
    partitions.iter().enumerate().filter(|(i, _)| i % workers.max(1) == worker).map(|(_, p)| *p).collect()
}

#[derive(Debug, Default)]
struct MemberState {
    generation: u64,
    lease: Option<Arc<Lease>>,
    /// A revocation of the current lease is under way.
    revoking: bool,
    /// Local workers that acknowledged the revocation under way.
    acknowledged: BTreeSet<usize>,
    /// Local workers gone for good (finished): they count as acknowledged.
    retired: BTreeSet<usize>,
    /// The member is leaving: a revocation then waits for nobody (the workers committed already).
    closing: bool,
    /// The revocation under way is of a lost assignment (the session expired, the broker was
    /// gone): its partitions may be someone else's already, so nothing is committed.
    lost: bool,
    rebalances: u64,
    revoked_at: Option<Instant>,
    /// From the last revocation to the assignment after it.
    last_pause: Option<Duration>,
    /// Local workers that read the current lease to its end (`--exit-at-end`).
    at_end: BTreeSet<usize>,
    /// The generation whose end the job exits at: no lease after it reaches the workers.
    exit_at: Option<u64>,
    /// Why the job cannot exit cleanly at the end (see [`ExitVerdict::Fail`]).
    exit_failed: Option<String>,
}

/// What an `--exit-at-end` instance in a group may do once its workers read their lease to the
/// end (see [`ExitJudge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitVerdict {
    /// Other partitions of the topic are not read to their end yet: keep the dataflow.
    Wait,
    /// The group has read the topic: every worker of this process may stop.
    Exit,
    /// Partitions no live member holds stayed unread past the limit: stop with this error.
    Fail(String),
}

/// What a member and its process's workers share. Workers poll it; the member waits on it.
pub struct Membership {
    topic: String,
    workers: usize,
    state: Mutex<MemberState>,
    changed: Condvar,
    /// The member's consumer, for splitting partition queues inside the rebalance callback.
    consumer: OnceLock<Weak<Reader>>,
    /// Every new lease is announced here, in order, for the job (see [`AssignmentLog`]).
    log: AssignmentLog,
    /// Which entry of the log this membership writes as.
    slot: usize,
}

/// The leases granted in this process, over all of its memberships, in order, with the slot of
/// the membership that got each. Every worker builds a dataflow per entry in this order, which
/// timely needs (dataflows are matched across workers by the order they are built in), even for
/// a lease revoked before it got to it (its source then reads nothing).
#[derive(Clone, Debug, Default)]
pub struct AssignmentLog(Arc<Mutex<Vec<LogEntry>>>);

/// One granted lease and the slot of the membership it came to.
pub type LogEntry = (usize, Arc<Lease>);

impl AssignmentLog {
    /// The entries from `from` on.
    pub fn since(&self, from: usize) -> Vec<LogEntry> {
        let log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        log.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn push(&self, entry: LogEntry) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }
}

/// Counters of a membership, for the metrics and `/health`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    pub generation: u64,
    pub rebalances: u64,
    pub assigned: usize,
    /// Partitions are moving: revoked and not yet assigned again.
    pub rebalancing: bool,
    pub last_pause: Option<Duration>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("topic", &self.topic).field("state", &*self.lock()).finish()
    }
}

impl Membership {
    fn lock(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The lease of `generation`, if it is the current one.
    pub fn lease(&self, generation: u64) -> Option<Arc<Lease>> {
        self.lock().lease.clone().filter(|l| l.generation == generation)
    }

    /// Whether the lease of `generation` is current and not being revoked.
    pub fn holds(&self, generation: u64) -> bool {
        let state = self.lock();
        !state.revoking && state.lease.as_ref().is_some_and(|l| l.generation == generation)
    }

    /// Whether the lease of `generation` is being revoked and local worker `worker` has not yet
    /// acknowledged it (it should stop reading, commit, then [`Membership::acknowledge`]).
    pub fn revoking(&self, generation: u64, worker: usize) -> bool {
        let state = self.lock();
        state.revoking && state.lease.as_ref().is_some_and(|l| l.generation == generation) && !state.acknowledged.contains(&worker)
    }

    /// Whether the lease of `generation` is over: revoked and every worker acknowledged, or
    /// superseded. Its dataflow can go.
    pub fn ended(&self, generation: u64) -> bool {
        let state = self.lock();
        match &state.lease {
            Some(lease) if lease.generation == generation => state.revoking && self.all_acknowledged(&state),
            _ => state.generation >= generation,
        }
    }

    fn all_acknowledged(&self, state: &MemberState) -> bool {
        state.acknowledged.union(&state.retired).count() >= self.workers
    }

    /// Local worker `worker` stopped reading the lease under revocation and committed.
    pub fn acknowledge(&self, worker: usize) {
        let mut state = self.lock();
        if state.revoking {
            state.acknowledged.insert(worker);
        }
        self.changed.notify_all();
    }

    /// Local worker `worker` is gone for good: revocations no longer wait for it.
    pub fn retire(&self, worker: usize) {
        self.lock().retired.insert(worker);
        self.changed.notify_all();
    }

    pub fn stats(&self) -> MembershipStats {
        let state = self.lock();
        MembershipStats {
            generation: state.generation,
            rebalances: state.rebalances,
            assigned: state.lease.as_ref().map_or(0, |l| l.partitions.len()),
            rebalancing: state.revoking || (state.lease.is_none() && state.generation > 0),
            last_pause: state.last_pause,
        }
    }

    /// Local worker `worker` read the lease of `generation` to its end (`--exit-at-end`): whether
    /// it may stop. The first answer is [`ExitVerdict::Wait`]: once every worker is at the end,
    /// the member thread looks at the whole group ([`ExitJudge`]) and latches its verdict, the
    /// same for every worker. No lease after a latched exit reaches the workers, so they all
    /// stop after the same dataflows (timely needs every worker to build the same ones).
    pub fn at_end(&self, worker: usize, generation: u64) -> ExitVerdict {
        let mut state = self.lock();
        if let Some(error) = &state.exit_failed {
            return ExitVerdict::Fail(error.clone());
        }
        if state.exit_at == Some(generation) {
            return ExitVerdict::Exit;
        }
        if state.lease.as_ref().is_some_and(|l| l.generation == generation) {
            state.at_end.insert(worker);
        }
        ExitVerdict::Wait
    }

    /// The lease every local worker has read to its end, if there is one, some worker waits for
    /// the verdict, and the member is neither handing over nor leaving: what the member thread
    /// judges. Workers gone for good count as at the end, but only beside one that waits: a job
    /// stopping (SIGTERM) retires every worker without asking, and judging it then would look
    /// at the group, and could rejoin it, while the instance leaves.
    fn read_to_end(&self) -> Option<Arc<Lease>> {
        let state = self.lock();
        let lease = state.lease.clone()?;
        let done = !state.at_end.is_empty() && state.at_end.union(&state.retired).count() >= self.workers;
        let settled = !state.revoking && !state.closing && state.exit_at.is_none() && state.exit_failed.is_none();
        (done && settled).then_some(lease)
    }

    /// Latches the judge's verdict on the lease of `generation` (nothing, when another lease
    /// came meanwhile: it is read first). Returns whether it was latched.
    fn latch(&self, generation: u64, verdict: &ExitVerdict) -> bool {
        let mut state = self.lock();
        let latched = state.exit_at.is_some() || state.exit_failed.is_some();
        if latched || state.revoking || state.lease.as_ref().is_none_or(|l| l.generation != generation) {
            return false;
        }
        match verdict {
            ExitVerdict::Exit => state.exit_at = Some(generation),
            ExitVerdict::Fail(error) => state.exit_failed = Some(error.clone()),
            ExitVerdict::Wait => return false,
        }
        self.changed.notify_all();
        true
    }

    /// Whether the revocation under way is of a lost assignment: stop, commit nothing.
    pub fn lost(&self) -> bool {
        self.lock().lost
    }

    /// Before librdkafka gives the partitions up: revoke the lease and wait for the workers
    /// (not when the assignment is `lost`: there is nothing they may commit).
    fn revoke(&self, lost: bool) {
        let mut state = self.lock();
        let Some(lease) = state.lease.clone() else { return };
        state.revoked_at = Some(Instant::now());
        // Leaving, or exiting at the end: the workers committed everything already.
        if state.closing || state.exit_at.is_some() {
            return;
        }
        state.revoking = true;
        state.lost = lost;
        state.acknowledged.clear();
        if lost {
            tracing::warn!(topic = %self.topic, generation = lease.generation, partitions = ?lease.partitions, "group assignment lost (session expired): stopping without committing; the partitions' next owner replays from the last commit");
            self.changed.notify_all();
            return;
        }
        tracing::info!(topic = %self.topic, generation = lease.generation, partitions = ?lease.partitions, "group rebalance: handing partitions over");
        self.changed.notify_all();
        let started = Instant::now();
        let (mut state, timeout) =
            self.changed.wait_timeout_while(state, HANDOVER_TIMEOUT, |s| !s.closing && !self.all_acknowledged(s)).unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            // From here on the partitions are the next owner's: a late hand-over commit would
            // overwrite its offsets and marks, so the slow workers commit nothing (as if lost).
            state.lost = true;
            tracing::warn!(
                topic = %self.topic,
                acknowledged = ?state.acknowledged,
                "workers did not acknowledge the hand-over within {HANDOVER_TIMEOUT:?}: giving the partitions up anyway, uncommitted (their next owner replays from the last commit)"
            );
        } else {
            tracing::debug!(topic = %self.topic, took = ?started.elapsed(), "hand-over acknowledged");
        }
    }

    /// After librdkafka gave the partitions up.
    fn revoked(&self) {
        let mut state = self.lock();
        state.lease = None;
        state.revoking = false;
        state.acknowledged.clear();
        self.changed.notify_all();
    }

    /// After librdkafka assigned `list`: split the queues off and grant the new lease.
    fn assigned(self: &Arc<Self>, list: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else { return };
        let mut partitions: Vec<i32> = list.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        partitions.sort_unstable();
        // Right away: librdkafka is fetching already, and what lands before a split stays on
        // the member's own queue (the member thread sends such a message back, see `run`).
        let queues = partitions.iter().filter_map(|&p| consumer.split_partition_queue(&self.topic, p).map(|q| (p, q))).collect();
        let committed = match consumer.committed_offsets(list.clone(), METADATA_TIMEOUT) {
            Ok(offsets) => offsets
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, topic = %self.topic, "reading committed offsets at assignment; partitions start where librdkafka resumes them");
                HashMap::new()
            }
        };
        let mut state = self.lock();
        if let Some(exit_at) = state.exit_at {
            // The workers are stopping at the end of an earlier lease; leaving the group gives
            // these partitions to the other members.
            tracing::info!(topic = %self.topic, exit_at, ?partitions, "group assignment after the exit at the end: left to the other members");
            return;
        }
        state.generation += 1;
        state.rebalances += 1;
        state.at_end.clear();
        state.last_pause = state.revoked_at.take().map(|t| t.elapsed());
        let generation = state.generation;
        tracing::info!(topic = %self.topic, generation, ?partitions, "group assignment");
        let lease = Arc::new(Lease {
            generation,
            partitions,
            granted: Instant::now(),
            consumer,
            queues: Mutex::new(queues),
            committed,
            board: WatermarkBoard::default(),
            membership: self.clone(),
        });
        state.lease = Some(lease.clone());
        state.revoking = false;
        state.lost = false;
        self.log.push((self.slot, lease));
        self.changed.notify_all();
    }
}

/// What [`ExitJudge::judge`] decides about the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    Verdict(ExitVerdict),
    /// These partitions are held by no live member: rejoin the group so that they are assigned.
    Rejoin(Vec<i32>),
}

/// Decides when an `--exit-at-end` instance in a group, its own lease read to the end, may stop:
/// once the group has read the whole topic. A partition counts as read when it is
/// - in this instance's lease (its workers read it to the end), or
/// - committed up to its log end by the group, or
/// - held by another member seen in the group for a whole session timeout (a live member reads
///   it; a killed one would have been dropped by the broker by then).
///
/// A partition held by nobody (a killed member's, while the broker still lists the member, the
/// new instance was handed an empty assignment; Tansu 0.6 then never reassigns it) makes the
/// instance rejoin the group once its lease is a session timeout old, so that the partition is
/// assigned again ([`MAX_REJOINS`] times at most). Still unread past
/// `max(`[`EXIT_WAIT_MIN`]`, 4 x (session + margin))` of waiting, the job fails, naming the
/// partitions: it never exits 0 with records of the topic unread by anyone.
#[derive(Debug)]
pub(crate) struct ExitJudge {
    /// The session timeout plus [`SESSION_MARGIN`].
    settle: Duration,
    /// The lease judged, and since when.
    waiting: Option<(u64, Instant)>,
    rejoins: u32,
    /// Per partition, the other member seen holding it, and since when.
    holders: HashMap<i32, (String, Instant)>,
}

impl ExitJudge {
    pub(crate) fn new(session: Duration) -> ExitJudge {
        ExitJudge { settle: session + SESSION_MARGIN, waiting: None, rejoins: 0, holders: HashMap::new() }
    }

    /// Judges the group as `partitions` describe it, for the lease `generation` holding `mine`
    /// (granted `lease_age` ago) of the instance with client id `me`.
    pub(crate) fn judge(
        &mut self,
        generation: u64,
        mine: &[i32],
        lease_age: Duration,
        partitions: &[super::describe::PartitionLag],
        me: &str,
        now: Instant,
    ) -> Judgement {
        let since = match self.waiting {
            Some((g, since)) if g == generation => since,
            _ => self.waiting.insert((generation, now)).1,
        };
        let (mut unowned, mut settling) = (Vec::new(), Vec::new());
        for p in partitions {
            if mine.contains(&p.partition) || p.committed.unwrap_or(0) >= p.log_end {
                continue;
            }
            match p.owner.as_ref().filter(|m| m.client_id != me) {
                Some(owner) => {
                    let seen = self.holders.entry(p.partition).or_insert_with(|| (owner.member_id.clone(), now));
                    if seen.0 != owner.member_id {
                        *seen = (owner.member_id.clone(), now);
                    }
                    if now.duration_since(seen.1) < self.settle {
                        settling.push(p.partition);
                    }
                }
                None => {
                    self.holders.remove(&p.partition);
                    unowned.push(p.partition);
                }
            }
        }
        if unowned.is_empty() && settling.is_empty() {
            return Judgement::Verdict(ExitVerdict::Exit);
        }
        let limit = EXIT_WAIT_MIN.max(self.settle * 4);
        if now.duration_since(since) >= limit {
            let mut stuck = unowned;
            stuck.extend(settling);
            stuck.sort_unstable();
            return Judgement::Verdict(ExitVerdict::Fail(format!(
                "partitions {stuck:?} were neither read to their end by the group nor held by a live member within {limit:?} of this instance reading its own partitions ({mine:?}) to the end; nothing of theirs was skipped: run again (or without --exit-at-end) to read them"
            )));
        }
        if !unowned.is_empty() && lease_age >= self.settle && self.rejoins < MAX_REJOINS {
            self.rejoins += 1;
            return Judgement::Rejoin(unowned);
        }
        Judgement::Verdict(ExitVerdict::Wait)
    }
}

/// The rebalance side of [`ReaderContext`] for a member consumer.
pub(crate) fn on_rebalance(membership: &Arc<Membership>, rebalance: &Rebalance<'_>, before: bool, lost: bool) {
    match (rebalance, before) {
        (Rebalance::Revoke(_), true) => membership.revoke(lost),
        (Rebalance::Revoke(_), false) => membership.revoked(),
        (Rebalance::Assign(list), false) => membership.assigned(list),
        (Rebalance::Error(error), _) => tracing::warn!(%error, topic = %membership.topic, "group rebalance error"),
        _ => {}
    }
}

/// A member of a consumer group as the broker describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// What the member was given, `(topic, partition)` (empty between rebalances).
    pub assignment: Vec<(String, i32)>,
}

/// The members `group` has now, as the broker describes it (empty: nobody joined, or the
/// group does not exist).
pub fn group_members(kafka: &KafkaConfig, group: &str) -> Result<Vec<MemberInfo>, KafkaError> {
    let consumer = kafka.plain_consumer(group)?;
    // A fresh client has no broker up yet, and librdkafka's group listing then waits for a
    // broker state change in steps of a second: a metadata request (milliseconds) connects it
    // first. Job start-up on Tansu went from ~1.35 s to ~0.35 s.
    consumer.fetch_metadata(None, METADATA_TIMEOUT).map_err(KafkaError::client(format!("connecting to describe consumer group `{group}`")))?;
    let list =
        consumer.fetch_group_list(Some(group), METADATA_TIMEOUT).map_err(KafkaError::client(format!("describing consumer group `{group}`")))?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| MemberInfo {
            member_id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            host: m.client_host().to_string(),
            assignment: m.assignment().map(super::describe::parse_assignment).unwrap_or_default(),
        })
        .collect())
}

/// The side group in which jobs with static assignment announce themselves, so that an
/// instance joining `group` can see them (a static job reads with `assign()` and is never a
/// member of `group` itself).
pub fn static_group(group: &str) -> String {
    format!("{group}.static")
}

/// A static job's presence in [`static_group`]: a member that subscribes to the topic and
/// pauses whatever it is assigned (it reads nothing and commits nothing), kept alive by a
/// thread until dropped.
pub struct StaticAnnouncement {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticAnnouncement {
    pub fn announce(kafka: &KafkaConfig, group: &str, topic: &str, client_id: &str) -> Result<StaticAnnouncement, KafkaError> {
        let side = static_group(group);
        let consumer: Reader = kafka
            .reader_config(&side, &[("client.id", client_id), ("enable.partition.eof", "false")])
            .create_with_context(ReaderContext::default())
            .map_err(KafkaError::client(format!("creating a member of `{side}`")))?;
        consumer.subscribe(&[topic]).map_err(KafkaError::client(format!("joining `{side}`")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("static-announce".into())
                .spawn(move || {
                    let mut recorded = false;
                    while !stop.load(Ordering::Relaxed) {
                        let _ = consumer.poll(MEMBER_POLL);
                        // Fetch nothing: the job's own readers read these partitions.
                        if let Some(assigned) = consumer.assignment().ok().filter(|a| a.count() > 0) {
                            let _ = consumer.pause(&assigned);
                            // Some brokers (Tansu 0.6) describe a group's members only once it
                            // has committed: commit offset 0 in the side group, which nobody reads.
                            if !recorded {
                                let mut zero = TopicPartitionList::new();
                                for e in assigned.elements() {
                                    let _ = zero.add_partition_offset(e.topic(), e.partition(), Offset::Offset(0));
                                }
                                recorded = consumer.commit(&zero, rdkafka::consumer::CommitMode::Sync).is_ok();
                            }
                        }
                    }
                    leave_group(&consumer);
                })
                .map_err(|e| KafkaError::Other(format!("starting the static announcement thread: {e}")))?
        };
        Ok(StaticAnnouncement { stop, thread: Some(thread) })
    }
}

impl Drop for StaticAnnouncement {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This process's member of a group for one topic, and the thread that polls it.
pub struct GroupMember {
    membership: Arc<Membership>,
    consumer: Arc<Reader>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Joins `config.group` for `config.topic`; leases are announced on `log` as `slot`.
    pub fn join(config: &GroupConfig, log: AssignmentLog, slot: usize) -> Result<GroupMember, KafkaError> {
        let membership = Arc::new(Membership {
            topic: config.topic.clone(),
            workers: config.workers.max(1),
            state: Mutex::default(),
            changed: Condvar::new(),
            consumer: OnceLock::new(),
            log,
            slot,
        });
        let session = config.session_timeout_ms.max(1_000);
        let heartbeat = (session / 3).clamp(100, 3_000).to_string();
        let session = session.to_string();
        let consumer = Arc::new(config.kafka.group_member(
            &config.group,
            &[
                ("session.timeout.ms", session.as_str()),
                ("heartbeat.interval.ms", heartbeat.as_str()),
                ("partition.assignment.strategy", "roundrobin"),
                ("client.id", config.client_id.as_str()),
                // librdkafka re-reads the topic's metadata this often (default 5 min) and starts
                // a rebalance when its partition count grew: new partitions are read within ~2 s.
                ("topic.metadata.refresh.interval.ms", TOPIC_REFRESH_MS),
            ],
            membership.clone(),
        )?);
        let _ = membership.consumer.set(Arc::downgrade(&consumer));
        consumer.subscribe(&[&config.topic]).map_err(KafkaError::client(format!("joining group `{}` for `{}`", config.group, config.topic)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop, membership, config) = (consumer.clone(), stop.clone(), membership.clone(), config.clone());
            std::thread::Builder::new()
                .name(format!("member-{}", config.topic))
                .spawn(move || run(&consumer, &stop, &membership, &config))
                .map_err(|e| KafkaError::Other(format!("starting the group member thread: {e}")))?
        };
        tracing::info!(group = %config.group, topic = %config.topic, client = %config.client_id, "joined consumer group");
        Ok(GroupMember { membership, consumer, stop, thread: Some(thread) })
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Leaves the group: the workers have committed; partitions go to the other members now.
    pub fn leave(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.membership.lock().closing = true;
        self.membership.changed.notify_all();
        self.stop.store(true, Ordering::Relaxed);
        let _ = thread.join();
        leave_group(&self.consumer);
        // The leases hold the consumer (and it, through its context, the membership): let go.
        self.membership.lock().lease = None;
        self.membership.log.clear();
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.close();
    }
}

/// The member thread: polls (rebalances run inside), sends back any message that reached the
/// member's own queue before its partition's queue was split off, and judges whether an
/// instance at the end of its lease may stop ([`ExitJudge`]).
fn run(consumer: &Reader, stop: &AtomicBool, membership: &Membership, config: &GroupConfig) {
    let topic = config.topic.as_str();
    let mut judge = ExitJudge::new(Duration::from_millis(config.session_timeout_ms));
    let mut judged = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if judged.elapsed() >= EXIT_CHECK_EVERY {
            if let Some(lease) = membership.read_to_end() {
                judged = Instant::now();
                judge_the_end(consumer, membership, config, &mut judge, &lease);
            }
        }
        match consumer.poll(MEMBER_POLL) {
            Some(Ok(message)) => {
                // Seek its partition back to it: the fetch starts again, into the split queue.
                let (partition, offset) = (message.partition(), message.offset());
                drop(message);
                if let Err(error) = consumer.seek(topic, partition, Offset::Offset(offset), METADATA_TIMEOUT) {
                    tracing::warn!(%error, topic, partition, offset, "sending an early message back to its partition's queue");
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => tracing::warn!(%error, topic, "group member"),
        }
    }
}

/// Looks at the group once for an instance whose workers read `lease` to the end, and acts on
/// the judgement: latches the verdict, or rejoins the group.
fn judge_the_end(consumer: &Reader, membership: &Membership, config: &GroupConfig, judge: &mut ExitJudge, lease: &Lease) {
    // The usual case, one instance holding the whole topic, needs no look at the group.
    if config.kafka.partition_count(consumer, &config.topic).is_ok_and(|n| usize::try_from(n).is_ok_and(|n| n == lease.partitions.len())) {
        membership.latch(lease.generation, &ExitVerdict::Exit);
        return;
    }
    let described = match super::describe::describe_group(&config.kafka, &config.group, &config.topic) {
        Ok(described) => described,
        Err(error) => {
            tracing::warn!(%error, group = %config.group, "describing the group at the end of the input; trying again");
            return;
        }
    };
    let judgement =
        judge.judge(lease.generation, &lease.partitions, lease.granted.elapsed(), &described.partitions, &config.client_id, Instant::now());
    match judgement {
        Judgement::Verdict(ExitVerdict::Wait) => {
            tracing::debug!(group = %config.group, topic = %config.topic, "read its partitions to the end; the group has not read the rest yet")
        }
        Judgement::Verdict(verdict) => {
            if membership.latch(lease.generation, &verdict) {
                tracing::info!(group = %config.group, topic = %config.topic, ?verdict, "the end of the input, for the whole group");
            }
        }
        Judgement::Rejoin(partitions) => {
            tracing::warn!(
                group = %config.group,
                topic = %config.topic,
                ?partitions,
                "partitions held by no live member (a killed member's?): rejoining the group to have them assigned"
            );
            leave_group(consumer);
            if let Err(error) = consumer.subscribe(&[&config.topic]) {
                tracing::warn!(%error, group = %config.group, "rejoining the group");
            }
        }
    }
}

/// Unsubscribes and polls until librdkafka has given the partitions up (the revoke callback
/// ran), for at most 5 s; dropping the consumer then leaves the group.
fn leave_group(consumer: &Reader) {
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(20));
        if consumer.assignment().map(|a| a.count() == 0).unwrap_or(true) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_spread_over_the_workers_round_robin_and_whole() {
        let parts = vec![0, 2, 3, 5, 7];
        let shares: Vec<Vec<i32>> = (0..2).map(|w| share(&parts, w, 2)).collect();
        assert_eq!(shares, vec![vec![0, 3, 7], vec![2, 5]]);
        let mut all: Vec<i32> = (0..3).flat_map(|w| share(&parts, w, 3)).collect();
        all.sort_unstable();
        assert_eq!(all, parts, "every partition read by exactly one worker");
        assert_eq!(share(&parts, 0, 0), parts, "no workers is one worker");
    }

    /// A membership of two workers granted lease 1 of `partitions` (by hand: `assigned()`
    /// needs a member consumer).
    fn two_workers_holding(partitions: &[i32]) -> Arc<Membership> {
        let membership = Arc::new(Membership {
            topic: "t".into(),
            workers: 2,
            state: Mutex::default(),
            changed: Condvar::new(),
            consumer: OnceLock::new(),
            log: AssignmentLog::default(),
            slot: 0,
        });
        let mut state = membership.lock();
        state.generation = 1;
        state.lease = Some(Arc::new(Lease {
            generation: 1,
            partitions: partitions.to_vec(),
            granted: Instant::now(),
            consumer: Arc::new(KafkaConfig::new("127.0.0.1:1").plain_consumer("g").expect("consumer")),
            queues: Mutex::default(),
            committed: HashMap::new(),
            board: WatermarkBoard::default(),
            membership: membership.clone(),
        }));
        drop(state);
        membership
    }

    fn partition(p: i32, committed: Option<i64>, log_end: i64, owner: Option<&str>) -> super::super::describe::PartitionLag {
        super::super::describe::PartitionLag {
            partition: p,
            committed,
            log_end,
            owner: owner.map(|id| MemberInfo {
                member_id: format!("{id}-member"),
                client_id: id.to_string(),
                host: String::new(),
                assignment: Vec::new(),
            }),
            committed_by: String::new(),
            delivered_before: None,
        }
    }

    #[test]
    fn an_instance_at_the_end_exits_once_the_group_read_every_partition() {
        let session = Duration::from_secs(6);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let exit = Judgement::Verdict(ExitVerdict::Exit);
        let wait = Judgement::Verdict(ExitVerdict::Wait);
        // Its own partitions, and one the group committed to its end (or that has no records).
        let group = [partition(0, Some(5), 9, None), partition(1, Some(9), 9, None), partition(2, None, 0, None)];
        assert_eq!(ExitJudge::new(session).judge(1, &[0], Duration::ZERO, &group, "me", t0), exit);
        // Another member's partition not yet read to its end: that member counts as alive only
        // once it stayed in the group for a session timeout (a killed one is dropped by then).
        let mut judge = ExitJudge::new(session);
        let group = [partition(0, Some(9), 9, None), partition(1, Some(3), 9, Some("other"))];
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &group, "me", at(0)), wait);
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &group, "me", at(7)), wait);
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &group, "me", at(8)), exit);
        // A different member took it meanwhile: its own session timeout starts.
        let mut judge = ExitJudge::new(session);
        judge.judge(1, &[0], Duration::ZERO, &group, "me", at(0));
        let moved = [partition(0, Some(9), 9, None), partition(1, Some(3), 9, Some("third"))];
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &moved, "me", at(5)), wait);
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &moved, "me", at(12)), wait);
        assert_eq!(judge.judge(1, &[0], Duration::ZERO, &moved, "me", at(13)), exit);
        // A partition this instance is named the owner of but not leased is nobody's.
        let stale = [partition(0, Some(9), 9, None), partition(1, Some(3), 9, Some("me"))];
        assert_eq!(ExitJudge::new(session).judge(1, &[0], Duration::from_secs(9), &stale, "me", t0), Judgement::Rejoin(vec![1]));
    }

    #[test]
    fn partitions_nobody_holds_make_the_instance_rejoin_then_fail_naming_them() {
        let session = Duration::from_secs(6);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let wait = Judgement::Verdict(ExitVerdict::Wait);
        let group = [partition(0, Some(9), 9, None), partition(1, Some(3), 9, None), partition(3, None, 4, None)];
        let mut judge = ExitJudge::new(session);
        // The killed member may still be listed by the broker: no rejoin before the lease is a
        // session timeout (and margin) old.
        assert_eq!(judge.judge(1, &[0], Duration::from_secs(1), &group, "me", at(0)), wait);
        assert_eq!(judge.judge(1, &[0], Duration::from_secs(8), &group, "me", at(7)), Judgement::Rejoin(vec![1, 3]));
        // Each new lease waits its own session timeout; at most MAX_REJOINS rejoins.
        for generation in 2..=MAX_REJOINS as u64 {
            assert_eq!(judge.judge(generation, &[0], Duration::from_secs(1), &group, "me", at(8)), wait);
            assert_eq!(judge.judge(generation, &[0], Duration::from_secs(8), &group, "me", at(15)), Judgement::Rejoin(vec![1, 3]));
        }
        let last = MAX_REJOINS as u64 + 1;
        assert_eq!(judge.judge(last, &[0], Duration::from_secs(30), &group, "me", at(20)), wait);
        assert_eq!(judge.judge(last, &[0], Duration::from_secs(60), &group, "me", at(79)), wait);
        match judge.judge(last, &[0], Duration::from_secs(61), &group, "me", at(80)) {
            Judgement::Verdict(ExitVerdict::Fail(error)) => assert!(error.contains("[1, 3]"), "{error}"),
            other => panic!("unread partitions past the limit fail the job, got {other:?}"),
        }
        // Once they are read (here: committed to their end by whoever got them), the same judge exits.
        let read = [partition(0, Some(9), 9, None), partition(1, Some(9), 9, None), partition(3, Some(4), 4, None)];
        assert_eq!(judge.judge(last + 1, &[0], Duration::ZERO, &read, "me", at(81)), Judgement::Verdict(ExitVerdict::Exit));
    }

    #[test]
    fn an_exit_is_latched_once_the_same_for_every_worker() {
        let membership = two_workers_holding(&[0]);
        assert_eq!(membership.at_end(0, 1), ExitVerdict::Wait);
        assert!(membership.read_to_end().is_none(), "worker 1 has not read its share to the end");
        assert_eq!(membership.at_end(1, 2), ExitVerdict::Wait);
        assert!(membership.read_to_end().is_none(), "worker 1 read another lease to its end, not this one");
        assert_eq!(membership.at_end(1, 1), ExitVerdict::Wait);
        assert_eq!(membership.read_to_end().map(|l| l.generation), Some(1), "every worker is at the end: judge it");
        assert!(!membership.latch(2, &ExitVerdict::Exit), "a verdict on a lease that is not the current one is void");
        assert!(membership.latch(1, &ExitVerdict::Exit));
        assert_eq!((membership.at_end(0, 1), membership.at_end(1, 1)), (ExitVerdict::Exit, ExitVerdict::Exit));
        assert!(membership.read_to_end().is_none(), "judged once");
        // A rebalance now: the revocation waits for nobody (the workers are stopping).
        membership.revoke(false);
        assert!(!membership.lock().revoking);
        assert!(!membership.latch(1, &ExitVerdict::Fail("late".into())), "the verdict stays");
        assert_eq!(membership.at_end(0, 1), ExitVerdict::Exit);
    }

    #[test]
    fn a_stopping_job_whose_workers_retired_without_asking_is_not_judged() {
        // SIGTERM without --exit-at-end: the workers finish and retire, none asked for a verdict.
        // Judging it looked at the group and rejoined it while the instance left (an extra
        // rebalance for the other members; a video announced twice in video_reliability.rs).
        let membership = two_workers_holding(&[0]);
        membership.retire(0);
        membership.retire(1);
        assert!(membership.read_to_end().is_none(), "nobody waits for a verdict");
        // With --exit-at-end, a worker that asked and one gone for good: judged.
        let membership = two_workers_holding(&[0]);
        membership.retire(1);
        assert_eq!(membership.at_end(0, 1), ExitVerdict::Wait);
        assert_eq!(membership.read_to_end().map(|l| l.generation), Some(1));
        // Not once the member is leaving.
        membership.lock().closing = true;
        assert!(membership.read_to_end().is_none(), "a leaving member is not judged");
    }

    #[test]
    fn a_revocation_waits_for_every_worker_and_ends_the_lease() {
        let membership = two_workers_holding(&[0, 1]);
        assert!(membership.holds(1) && !membership.ended(1));
        let revoker = {
            let membership = membership.clone();
            std::thread::spawn(move || membership.revoke(false))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !membership.revoking(1, 0) {
            assert!(Instant::now() < deadline, "the revocation never started");
            std::thread::yield_now();
        }
        assert!(!membership.holds(1), "sources stop reading as soon as the revocation starts");
        membership.acknowledge(0);
        assert!(!membership.revoking(1, 0) && membership.revoking(1, 1));
        assert!(!membership.ended(1), "worker 1 has not committed yet");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!revoker.is_finished(), "librdkafka must not give the partitions up before every worker committed");
        membership.retire(1);
        revoker.join().expect("revoke");
        assert!(membership.ended(1));
        membership.revoked();
        assert!(membership.ended(1) && !membership.holds(1));
        assert!(membership.stats().rebalancing, "revoked, not yet assigned again");
    }
}
