//! Per-driver computation: `by_driver` -> `in_time_order` (or `in_log_order`) -> any number of
//! `run_per_driver` operators.
//!
//! Samples are exchanged by key, then buffered once per worker (`in_time_order`) until the input
//! frontier (the source watermark) has passed their event time, and released in
//! `(time, partition, offset)` order, shared (`Rc`) by every keyed operator after it. That order,
//! not arrival order, decides every result, which is what makes results identical at any worker
//! count, process count or read batch size.
//!
//! Each operator holds one capability at the earliest time it may still emit: the frontier, the
//! oldest buffered sample, or the oldest time a key's logic still holds (an open window).
//! Downstream probes therefore pass a time only once every output derived from samples at or
//! before it has been emitted, which is what the Kafka source relies on to commit offsets.
//!
//! Keyed operators emit at *coarse* times: an output's time is its logic's time (a window's first
//! sample, an alert's detecting sample) rounded down to a multiple of
//! [`KeyedOptions::time_granularity_ms`], and the operator's capability is the frontier rounded
//! down alike. Rounding keeps both properties above (an output's time is still at or before every
//! sample it depends on, and a function of the data alone, not of how input was batched), while
//! every output of a granule shares one timestamp: one message and one progress update per
//! granule downstream instead of one per distinct millisecond, which made timely's progress
//! bookkeeping (`ChangeBatch::compact`) the largest single cost of the dataflow.
//!
//! About 600 lines with tests: the orderings and the keyed operator share the event-time buckets,
//! the key TTL and the coarse-time rule, and the tests check them together against a model.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;

use foldhash::fast::RandomState;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Exchange};
use timely::dataflow::Stream;

use crate::partition::key_route;
use crate::records::{EventTime, Sample, SourcePosition};

/// Per-key logic driven in event-time order. One `State` per key (driver).
pub trait KeyedLogic: 'static {
    type State: Default + 'static;
    type Out: Clone + 'static;

    /// One sample of a key, in the order its [`KeyedSamples`] stream gives (event-time order from
    /// `in_time_order`, partition order from `in_log_order`). Outputs are `(time, record)`
    /// with `time >= sample time` or `>= self.hold(state)` as it was before this call.
    fn on_sample(&self, state: &mut Self::State, sample: &Rc<Sample>, out: &mut Vec<(EventTime, Self::Out)>);

    /// Every sample earlier than `frontier` has been seen (`None`: the input has ended).
    fn on_progress(&self, _state: &mut Self::State, _frontier: Option<EventTime>, _out: &mut Vec<(EventTime, Self::Out)>) {}

    /// The earliest time this key may still emit at, apart from samples not yet seen.
    fn hold(&self, _state: &Self::State) -> Option<EventTime> {
        None
    }

    /// The earliest frontier at which `on_progress` has something to do for this key (a window
    /// end). Keys are only visited when the frontier reaches it, and all of them when the input ends.
    fn wake_at(&self, _state: &Self::State) -> Option<EventTime> {
        None
    }

    /// Whether a key's state can be dropped (nothing held, nothing to remember).
    fn is_idle(&self, _state: &Self::State) -> bool {
        false
    }

    /// The key has been silent for the key TTL: emit whatever it still holds; the state is
    /// dropped afterwards. By default, as if its input had ended.
    fn on_expire(&self, state: &mut Self::State, out: &mut Vec<(EventTime, Self::Out)>) {
        self.on_progress(state, None, out);
    }

    /// Approximate heap and inline bytes of one key's state.
    fn approx_bytes(&self, _state: &Self::State) -> usize {
        std::mem::size_of::<Self::State>()
    }

    /// With [`KeyedOptions::release_holds_after_ms`]: the record announcing that `key`'s hold
    /// (`Some`), older than that behind the frontier, no longer holds the operator's capability,
    /// or that a hold announced so is gone (`None`). Only for logics whose holds are not output
    /// times (a rule's lookback, not an open window): the announced hold must be kept by whoever
    /// commits offsets instead. `None` (the default) announces nothing.
    fn released(&self, _key: &str, _hold: Option<EventTime>) -> Option<Self::Out> {
        None
    }
}

/// How much state one keyed operator holds, refreshed after every activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    pub keys: usize,
    pub bytes: usize,
    /// Keys dropped because they were silent for the key TTL.
    pub expired: u64,
    /// Most keys held at once since the operator started.
    pub peak_keys: usize,
}

impl StateSize {
    /// This size, with the peak carried over from `before`.
    fn after(self, before: StateSize) -> StateSize {
        StateSize { peak_keys: before.peak_keys.max(self.keys), ..self }
    }
}

/// A readable handle on an operator's [`StateSize`] (same worker).
pub type StateGauge = Rc<Cell<StateSize>>;

/// One key's state with what the operator indexes about it.
struct KeyState<S> {
    last_seen: EventTime,
    /// The id of this key's one entry in [`Keys::seen`] (0: none, no TTL).
    ttl_entry: u64,
    state: S,
    hold: Option<EventTime>,
    wake: Option<EventTime>,
    bytes: usize,
}

/// Every key's state plus indexes, so that each activation costs in proportion to the keys it
/// touches, not to all keys held.
///
/// Key names are shared (`Rc<str>`) between the map and its indexes; the map's hasher is
/// foldhash, seeded per process (fast, and not open to chosen-key collisions).
struct Keys<L: KeyedLogic> {
    states: HashMap<Rc<str>, KeyState<L::State>, RandomState>,
    /// Holds are kept rounded down to this (see the module docs).
    granularity: u64,
    /// Multiset of the keys' holds.
    holds: BTreeMap<EventTime, usize>,
    /// `(time, key)`: visit `key` when the frontier reaches `time` (stale entries are skipped).
    wake: BTreeSet<(EventTime, Rc<str>)>,
    /// For the TTL, one entry `(time, id, key)` per key, earliest first, with `time` at or before
    /// the key's last sample: the key may be due only once its entry is, and a due entry whose
    /// key has been seen since goes back in at the key's last sample. So a sample costs no entry,
    /// and a key one heap operation per TTL period. Entries of removed keys are stale (their id
    /// no longer matches) and dropped when they come up. Only kept when a TTL is set.
    seen: BinaryHeap<Reverse<(EventTime, u64, Rc<str>)>>,
    /// The last id handed to a TTL entry.
    last_entry: u64,
    bytes: usize,
    expired: u64,
}

impl<L: KeyedLogic> Keys<L> {
    fn new(granularity: u64) -> Self {
        Keys {
            states: HashMap::default(),
            granularity,
            holds: BTreeMap::new(),
            wake: BTreeSet::new(),
            seen: BinaryHeap::new(),
            last_entry: 0,
            bytes: 0,
            expired: 0,
        }
    }

    fn remove_hold(holds: &mut BTreeMap<EventTime, usize>, hold: Option<EventTime>) {
        if let Some(hold) = hold {
            if let Some(count) = holds.get_mut(&hold) {
                *count -= 1;
                if *count == 0 {
                    holds.remove(&hold);
                }
            }
        }
    }

    /// Drops a key and its index entries (stale wake-up and TTL entries are skipped later).
    fn remove(&mut self, name: &str) -> Option<KeyState<L::State>> {
        let key = self.states.remove(name)?;
        Self::remove_hold(&mut self.holds, key.hold);
        self.bytes -= key.bytes;
        Some(key)
    }

    /// Runs `f` on a key's state (creating it), then re-reads its hold, wake-up time and size,
    /// and drops it if it has nothing left. `seen` is the sample time when tracking a TTL.
    fn with(&mut self, logic: &L, name: &str, seen: Option<EventTime>, f: impl FnOnce(&mut L::State)) {
        let Keys { states, holds, wake, seen: ttl_queue, last_entry, bytes, granularity, .. } = self;
        // One hash and probe per sample: the entry gives the shared name and the state together.
        let (shared, key) = match states.entry_ref(name) {
            EntryRef::Occupied(entry) => (entry.key().clone(), entry.into_mut()),
            EntryRef::Vacant(entry) => {
                let shared: Rc<str> = name.into();
                let entry = entry.insert_entry_with_key(
                    shared,
                    KeyState { last_seen: 0, ttl_entry: 0, state: L::State::default(), hold: None, wake: None, bytes: 0 },
                );
                (entry.key().clone(), entry.into_mut())
            }
        };
        if let Some(time) = seen {
            key.last_seen = time;
            if key.ttl_entry == 0 {
                *last_entry += 1;
                key.ttl_entry = *last_entry;
                ttl_queue.push(Reverse((time, key.ttl_entry, shared.clone())));
            }
        }
        f(&mut key.state);
        let hold = logic.hold(&key.state).map(|h| coarse(h, *granularity));
        if hold != key.hold {
            Self::remove_hold(holds, key.hold);
            if let Some(h) = hold {
                *holds.entry(h).or_default() += 1;
            }
            key.hold = hold;
        }
        let next_wake = logic.wake_at(&key.state);
        if next_wake.is_some() && next_wake != key.wake {
            wake.insert((next_wake.unwrap_or_default(), shared));
        }
        key.wake = next_wake;
        let size = name.len() + logic.approx_bytes(&key.state);
        *bytes = *bytes + size - key.bytes;
        key.bytes = size;
        if hold.is_none() && logic.is_idle(&key.state) {
            self.remove(name);
        }
    }

    /// Expires every key whose last sample is more than `ttl` before `frontier`.
    fn expire(&mut self, logic: &L, frontier: EventTime, ttl: u64, out: &mut Vec<(EventTime, L::Out)>) {
        while self.seen.peek().is_some_and(|Reverse((time, _, _))| frontier.saturating_sub(*time) > ttl) {
            let Reverse((_, id, name)) = self.seen.pop().expect("checked");
            match self.states.get(&name) {
                Some(key) if key.ttl_entry == id && frontier.saturating_sub(key.last_seen) > ttl => {
                    let mut key = self.remove(&name).expect("checked");
                    logic.on_expire(&mut key.state, out);
                    self.expired += 1;
                }
                // Seen since the entry went in: back in at its last sample (not due yet).
                Some(key) if key.ttl_entry == id => self.seen.push(Reverse((key.last_seen, id, name))),
                // A removed key's entry (the name may be held again, by a key with a new entry).
                _ => {}
            }
        }
    }

    fn min_hold(&self) -> Option<EventTime> {
        self.holds.keys().next().copied()
    }
}

/// `time` rounded down to a multiple of `granularity` (at least 1).
fn coarse(time: EventTime, granularity: u64) -> EventTime {
    time - time % granularity
}

/// How a [`run_per_driver`] operator keeps keys and times its outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedOptions {
    /// Drop a key's state once it has been silent this long in event time (after emitting what
    /// it holds); `None` keeps it until the input ends.
    pub key_ttl_ms: Option<u64>,
    /// Outputs are timestamped at their logic's time rounded down to a multiple of this (ms; 1
    /// is exact). Coarser times mean fewer timely messages and progress updates downstream;
    /// offsets are committed, and probes pass, up to this much event time later.
    pub time_granularity_ms: u64,
    /// A key's hold further than this (ms of event time) behind the input frontier stops holding
    /// the capability: the logic's [`KeyedLogic::released`] record announces it, stamped before
    /// the capability moves past it, so that one long-lived key (a condition lasting minutes)
    /// does not hold every downstream probe, and with it every offset commit, at its start.
    /// `None` (the default) holds every key's hold.
    pub release_holds_after_ms: Option<u64>,
}

impl Default for KeyedOptions {
    fn default() -> Self {
        KeyedOptions { key_ttl_ms: None, time_granularity_ms: DEFAULT_TIME_GRANULARITY_MS, release_holds_after_ms: None }
    }
}

/// The default [`KeyedOptions::time_granularity_ms`]: one second of event time, the default
/// slide of the sliding windows (about one sliding window per driver per granule). Windows
/// still close when the input frontier passes their end; only their timestamps are coarse.
pub const DEFAULT_TIME_GRANULARITY_MS: u64 = 1_000;

/// Samples exchanged so that all samples of a driver are on one worker. The only way to make
/// one is [`by_driver`], so per-key ordering cannot be fed an unpartitioned stream by mistake.
/// After the exchange each sample is wrapped once in an `Rc`, so the operators reading it
/// share one copy instead of timely cloning it for each.
#[derive(Clone)]
pub struct ByDriver<'s>(Stream<'s, EventTime, Vec<Rc<Sample>>>);

/// Exchanges samples by driver.
pub fn by_driver(samples: Stream<'_, EventTime, Vec<Sample>>) -> ByDriver<'_> {
    ByDriver(samples.exchange(|sample: &Sample| key_route(&sample.record.driver)).map(Rc::new))
}

impl<'s> ByDriver<'s> {
    /// The exchanged samples, for an operator that keeps them by driver (`dedupe.rs`).
    pub fn into_stream(self) -> Stream<'s, EventTime, Vec<Rc<Sample>>> {
        self.0
    }

    /// Samples already exchanged by driver, as such an operator passes them on.
    pub(crate) fn from_stream(stream: Stream<'s, EventTime, Vec<Rc<Sample>>>) -> ByDriver<'s> {
        ByDriver(stream)
    }
}

/// Samples of this worker's drivers, per driver in the order a [`KeyedLogic`] must see them,
/// at a timely timestamp no later than their event time: what [`run_per_driver`]
/// consumes. Shared (`Rc`), so several keyed operators read one copy of each sample. Made by
/// [`in_time_order`] (event-time order, once the watermark has passed) or [`in_log_order`]
/// (each driver's partition order, at once).
#[derive(Clone)]
pub struct KeyedSamples<'s>(Stream<'s, EventTime, Vec<Rc<Sample>>>);

/// Each driver's samples as they arrive, without waiting for the watermark: in the order of
/// the driver's partition (all of a driver's records are on one partition, read by one source
/// worker, and one sender's messages stay in order through the exchange). That order is fixed
/// by the log, so results are the same at any worker count or batch size; it equals event-time
/// order whenever the producer wrote each driver in time order. Logic fed this way must decide
/// what to do with a sample older than the driver's previous one.
pub fn in_log_order<'s>(samples: &ByDriver<'s>) -> KeyedSamples<'s> {
    KeyedSamples(samples.0.clone())
}

/// A buffered sample with its release key, `(time, partition, offset)`.
type Waiting = ((EventTime, SourcePosition), Rc<Sample>);

/// Event-time width of one bucket of [`TimeBuckets`].
const BUCKET_MS: EventTime = 256;

/// Samples waiting for the watermark, in buckets of [`BUCKET_MS`] of event time, each bucket
/// unsorted until it is released. Arrival costs a push (one map lookup per run of samples in
/// one bucket), release a sort of a small bucket. A map keyed by `(time, partition, offset)` paid
/// a tree insert and remove per sample; one sorted vector re-merged everything buffered on every
/// activation, which is most of the input when one partition's event time lags the others.
#[derive(Default)]
struct TimeBuckets {
    buckets: BTreeMap<EventTime, Vec<Waiting>>,
    len: usize,
    /// Emptied buckets' vectors, reused for new buckets instead of growing fresh ones.
    spare: Vec<Vec<Waiting>>,
}

/// Most emptied bucket vectors [`TimeBuckets`] keeps for reuse.
const SPARE_BUCKETS: usize = 64;

impl TimeBuckets {
    fn extend(&mut self, samples: impl Iterator<Item = Rc<Sample>>) {
        let mut samples = samples.map(|s| ((s.record.session_time_ms, s.at), s)).peekable();
        while let Some(first) = samples.next() {
            let bucket = coarse(first.0 .0, BUCKET_MS);
            let Self { buckets, spare, .. } = self;
            let entries = buckets.entry(bucket).or_insert_with(|| spare.pop().unwrap_or_default());
            entries.push(first);
            self.len += 1;
            while let Some(next) = samples.next_if(|((time, _), _)| coarse(*time, BUCKET_MS) == bucket) {
                entries.push(next);
                self.len += 1;
            }
        }
    }

    /// Hands `emit` every sample earlier than `limit`, in `(time, partition, offset)` order (unique
    /// keys, so the order is total), in one call if there are any.
    fn release_before(&mut self, limit: EventTime, emit: impl FnOnce(&mut dyn Iterator<Item = Rc<Sample>>)) {
        let mut ready: Vec<Vec<Waiting>> = Vec::new();
        while let Some(mut entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            if bucket >= limit {
                break;
            }
            let samples = entry.get_mut();
            samples.sort_unstable_by_key(|(key, _)| *key);
            if bucket + BUCKET_MS <= limit {
                ready.push(entry.remove());
            } else {
                let n = samples.partition_point(|((time, _), _)| *time < limit);
                if n == samples.len() {
                    ready.push(entry.remove());
                } else {
                    ready.push(samples.drain(..n).collect());
                }
                break;
            }
        }
        let released: usize = ready.iter().map(Vec::len).sum();
        if released > 0 {
            self.len -= released;
            emit(&mut ready.iter_mut().flat_map(|samples| samples.drain(..)).map(|(_, sample)| sample));
        }
        for mut emptied in ready {
            if self.spare.len() == SPARE_BUCKETS {
                break;
            }
            // `emit` may stop early; what it left is dropped, as the owned iterator did.
            emptied.clear();
            self.spare.push(emptied);
        }
    }

    fn first_time(&self) -> Option<EventTime> {
        self.buckets.first_key_value().and_then(|(_, samples)| samples.iter().map(|((time, _), _)| *time).min())
    }
}

/// Buffers samples until the frontier passes their event time, then releases them in order.
/// The gauge reports the buffer (`keys` is the number of buffered samples).
pub fn in_time_order<'s>(samples: &ByDriver<'s>) -> (KeyedSamples<'s>, StateGauge) {
    let gauge = StateGauge::default();
    let report = gauge.clone();
    let stream = samples.0.clone().unary_frontier(Pipeline, "InTimeOrder", move |initial, _info| {
        let mut held: Option<Capability<EventTime>> = Some(initial);
        let mut pending = TimeBuckets::default();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| pending.extend(data.drain(..)));
            let Some(cap) = held.as_mut() else {
                pending = TimeBuckets::default();
                return;
            };
            let frontier: Option<EventTime> = frontier.frontier().first().copied();
            // Everything released in one activation goes out at the held capability (at or before
            // every released sample): one timestamp per activation, not one per millisecond, keeps
            // timely's progress tracking cheap. Consumers order by the samples' own event times.
            pending.release_before(frontier.unwrap_or(EventTime::MAX), |ready| output.session(&*cap).give_iterator(ready));
            report.set(StateSize { keys: pending.len, bytes: pending.len * std::mem::size_of::<Sample>(), ..Default::default() }.after(report.get()));
            match pending.first_time().into_iter().chain(frontier).min() {
                Some(time) => cap.downgrade(&time.max(*cap.time())),
                None => held = None,
            }
        }
    });
    (KeyedSamples(stream), gauge)
}

/// Runs `logic` per driver over `samples`, in the order they come in: event-time order from
/// [`in_time_order`], each driver's log order from [`in_log_order`]. See the module docs.
///
/// With a key TTL, a key silent for that long in event time (the watermark is past its last
/// sample by the TTL) is expired: its logic emits what it holds and its state is dropped.
/// Outputs are timestamped at coarse times (see the module docs and [`KeyedOptions`]).
pub fn run_per_driver<'s, L: KeyedLogic>(
    samples: &KeyedSamples<'s>,
    name: &str,
    logic: L,
    options: KeyedOptions,
) -> (Stream<'s, EventTime, Vec<L::Out>>, StateGauge) {
    let KeyedOptions { key_ttl_ms, time_granularity_ms, release_holds_after_ms } = options;
    let granularity = time_granularity_ms.max(1);
    let gauge = StateGauge::default();
    let report = gauge.clone();
    let stream = samples.0.clone().unary_frontier(Pipeline, name, move |initial, _info| {
        let mut held: Option<Capability<EventTime>> = Some(initial);
        let mut keys: Keys<L> = Keys::new(granularity);
        let mut out: Vec<(EventTime, L::Out)> = Vec::new();
        // Keys whose hold is released (announced, not held), with the hold announced.
        let mut released: BTreeMap<Rc<str>, EventTime> = BTreeMap::new();
        move |(input, frontier), output| {
            let Some(cap) = held.as_mut() else {
                input.for_each(|_, _| {});
                return;
            };
            // Samples come in the order the logic must see them (see `KeyedSamples`).
            input.for_each(|_cap, data| {
                for sample in data.iter() {
                    let time = sample.record.session_time_ms;
                    keys.with(&logic, &sample.record.driver, key_ttl_ms.map(|_| time), |state| logic.on_sample(state, sample, &mut out));
                }
            });
            let frontier: Option<EventTime> = frontier.frontier().first().copied();
            // Keys whose next window end the frontier has reached (all of them when input ends).
            let due: Vec<Rc<str>> = match frontier {
                None => keys.states.keys().cloned().collect(),
                Some(f) => {
                    let mut due = Vec::new();
                    while keys.wake.first().is_some_and(|(time, _)| *time <= f) {
                        let (time, name) = keys.wake.pop_first().expect("checked");
                        if keys.states.get(&name).is_some_and(|k| k.wake == Some(time)) {
                            due.push(name);
                        }
                    }
                    due
                }
            };
            for name in due {
                if let Some(key) = keys.states.get_mut(&name) {
                    key.wake = None;
                }
                keys.with(&logic, &name, None, |state| logic.on_progress(state, frontier, &mut out));
            }
            if let (Some(ttl), Some(f)) = (key_ttl_ms, frontier) {
                keys.expire(&logic, f, ttl, &mut out);
            }

            if !out.is_empty() {
                out.sort_by_key(|(time, _)| *time);
                let mut batch = out.drain(..).map(|(time, record)| (coarse(time, granularity), record)).peekable();
                while let Some((time, first)) = batch.next() {
                    debug_assert!(time >= *cap.time(), "run_per_driver emitted at {time} before its hold {}", cap.time());
                    let at = cap.delayed(&time.max(*cap.time()));
                    let mut session = output.session(&at);
                    session.give(first);
                    while let Some((_, next)) = batch.next_if(|(t, _)| *t == time) {
                        session.give(next);
                    }
                }
            }

            report.set(StateSize { keys: keys.states.len(), bytes: keys.bytes, expired: keys.expired, ..Default::default() }.after(report.get()));
            // Once the input has ended every key has had its final `on_progress`: what a logic
            // still holds (a rule's lookback) can produce nothing more, so the capability goes.
            let mut hold = frontier.and_then(|f| keys.min_hold().into_iter().chain([coarse(f, granularity)]).min());
            if let (Some(after), Some(f), Some(time)) = (release_holds_after_ms, frontier, hold) {
                let floor = coarse(f.saturating_sub(after), granularity);
                let long: BTreeMap<Rc<str>, EventTime> = if time < floor {
                    keys.states.iter().filter_map(|(name, key)| key.hold.filter(|h| *h < floor).map(|h| (name.clone(), h))).collect()
                } else {
                    BTreeMap::new()
                };
                if long != released {
                    // Stamped at the capability, at or before every hold it announces: a probe
                    // passes a released hold only after its announcement.
                    let mut session = output.session(&*cap);
                    for (name, h) in &long {
                        if released.get(name) != Some(h) {
                            session.give_iterator(logic.released(name, Some(*h)).into_iter());
                        }
                    }
                    for name in released.keys().filter(|name| !long.contains_key(*name)) {
                        session.give_iterator(logic.released(name, None).into_iter());
                    }
                    released = long;
                }
                hold = Some(time.max(floor));
            }
            match hold {
                Some(time) => cap.downgrade(&time.max(*cap.time())),
                None => held = None,
            }
        }
    });
    (stream, gauge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TelemetryRecord;

    fn sample(time: EventTime, partition: i32, offset: i64) -> Rc<Sample> {
        Rc::new(Sample { at: SourcePosition { partition, offset }, record: TelemetryRecord { session_time_ms: time, ..Default::default() } })
    }

    /// A key that remembers its name and goes idle (is dropped) on a sample with gear 0.
    struct Remember;
    impl KeyedLogic for Remember {
        type State = (String, bool);
        type Out = String;
        fn on_sample(&self, state: &mut Self::State, sample: &Rc<Sample>, _out: &mut Vec<(EventTime, String)>) {
            *state = (sample.record.driver.to_string(), sample.record.gear == 0);
        }
        fn is_idle(&self, state: &Self::State) -> bool {
            state.1
        }
        fn on_expire(&self, state: &mut Self::State, out: &mut Vec<(EventTime, String)>) {
            out.push((0, state.0.clone()));
        }
    }

    /// Holds from a key's first sample with gear 9 until a sample with another gear; announces
    /// its released holds as `(key, hold)`.
    struct Sticky;
    impl KeyedLogic for Sticky {
        type State = Option<EventTime>;
        type Out = (String, Option<EventTime>);
        fn on_sample(&self, state: &mut Self::State, sample: &Rc<Sample>, _out: &mut Vec<(EventTime, Self::Out)>) {
            let time = sample.record.session_time_ms;
            *state = if sample.record.gear == 9 { Some(state.unwrap_or(time)) } else { None };
        }
        fn hold(&self, state: &Self::State) -> Option<EventTime> {
            *state
        }
        fn released(&self, key: &str, hold: Option<EventTime>) -> Option<Self::Out> {
            Some((key.to_string(), hold))
        }
    }

    /// A key's hold announced as released (`Some`) or gone (`None`).
    type Announced = (String, Option<EventTime>);

    /// What `sticky_run` saw: the outputs with their times, and `(input time, output frontier)`.
    type StickyRun = (Vec<(EventTime, Announced)>, Vec<(EventTime, EventTime)>);

    /// Key A holds from 1 s to 40 s of event time; B never holds. Feeds both to one
    /// `run_per_driver` and returns its outputs `(time, record)` and, at every second of input,
    /// how far its output frontier had got.
    fn sticky_run(release_holds_after_ms: Option<u64>) -> StickyRun {
        use timely::dataflow::operators::capture::Extract;
        use timely::dataflow::operators::{Capture, Input, Probe};
        timely::execute_directly(move |worker| {
            let (tx, rx) = std::sync::mpsc::channel();
            let options = KeyedOptions { time_granularity_ms: 1, release_holds_after_ms, ..Default::default() };
            let (mut input, probe) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, samples) = scope.new_input::<Vec<Sample>>();
                let keyed = in_log_order(&by_driver(samples));
                let (out, _) = run_per_driver(&keyed, "Sticky", Sticky, options);
                let (probe, out) = out.probe();
                out.capture_into(tx);
                (input, probe)
            });
            let mut progress = Vec::new();
            for (i, time) in (0..60_000).step_by(100).enumerate() {
                for (j, driver) in ["A", "B"].into_iter().enumerate() {
                    let gear = if driver == "A" && (1_000..40_000).contains(&time) { 9 } else { 5 };
                    let record = TelemetryRecord { driver: driver.into(), session_time_ms: time, gear, ..Default::default() };
                    input.send(Sample { at: SourcePosition { partition: j as i32, offset: i as i64 }, record });
                }
                input.advance_to(time + 100);
                worker.step();
                worker.step();
                if time % 1_000 == 0 {
                    progress.push((time, probe.with_frontier(|f| f.first().copied().unwrap_or(EventTime::MAX))));
                }
            }
            drop(input);
            while !probe.done() {
                worker.step();
            }
            (rx.extract().into_iter().flat_map(|(time, records)| records.into_iter().map(move |r| (time, r))).collect(), progress)
        })
    }

    /// A hold older than `release_holds_after_ms` behind the frontier stops holding the
    /// operator's capability, announced before the frontier passes it, and its end is announced
    /// too; without the option the one long hold stops the frontier for as long as it lasts.
    #[test]
    fn a_long_hold_is_announced_and_released_not_held() {
        let (held, progress) = sticky_run(None);
        assert!(held.is_empty(), "nothing announced without the option: {held:?}");
        let at = |progress: &[(EventTime, EventTime)], input: EventTime| progress.iter().find(|(t, _)| *t == input).unwrap().1;
        assert_eq!(at(&progress, 30_000), 1_000, "held at A's first held sample");

        let (announced, progress) = sticky_run(Some(10_000));
        assert_eq!(
            announced.iter().map(|(_, record)| record.clone()).collect::<Vec<_>>(),
            vec![("A".to_string(), Some(1_000)), ("A".to_string(), None)],
            "one announcement when A's hold falls 10 s behind, one when it ends"
        );
        assert!(announced[0].0 <= 1_000, "announced at or before the hold it releases: {announced:?}");
        let lag = at(&progress, 30_000);
        assert!((19_000..=21_000).contains(&lag), "the frontier follows the input 10 s behind while A holds: {lag}");
        assert!(progress.iter().all(|(input, frontier)| *frontier + 10_100 >= *input), "{progress:?}");
    }

    /// The TTL keeps one heap entry per key, not one per sample: against a model that remembers
    /// every key's last sample, each check expires exactly the keys silent for more than the TTL,
    /// never one seen since, nor a key dropped as idle and seen again under the same name.
    #[test]
    fn ttl_expires_exactly_the_keys_silent_longer_than_the_ttl() {
        use rand::{Rng, SeedableRng};
        const TTL: u64 = 1_000;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut keys: Keys<Remember> = Keys::new(1);
        let mut model: std::collections::HashMap<String, EventTime> = std::collections::HashMap::new();
        let (mut now, mut expired_total) = (0, 0);
        for step in 0..20_000 {
            now += rng.random_range(0..40);
            if rng.random_bool(0.9) {
                let name = format!("K{}", rng.random_range(0..30));
                let idle = rng.random_bool(0.02);
                let record =
                    TelemetryRecord { driver: name.as_str().into(), session_time_ms: now, gear: if idle { 0 } else { 5 }, ..Default::default() };
                let sample = Rc::new(Sample { at: SourcePosition { partition: 0, offset: step }, record });
                keys.with(&Remember, &name, Some(now), |state| Remember.on_sample(state, &sample, &mut Vec::new()));
                if idle {
                    model.remove(&name);
                } else {
                    model.insert(name, now);
                }
            } else {
                let mut out = Vec::new();
                keys.expire(&Remember, now, TTL, &mut out);
                let mut expired: Vec<String> = out.into_iter().map(|(_, name)| name).collect();
                let mut expected: Vec<String> = model.iter().filter(|(_, seen)| now - **seen > TTL).map(|(name, _)| name.clone()).collect();
                expired.sort();
                expected.sort();
                assert_eq!(expired, expected, "at {now} (step {step})");
                model.retain(|_, seen| now - *seen <= TTL);
                expired_total += expired.len();
                let mut held: Vec<&str> = keys.states.keys().map(|k| &**k).collect();
                let mut alive: Vec<&str> = model.keys().map(String::as_str).collect();
                held.sort_unstable();
                alive.sort_unstable();
                assert_eq!(held, alive, "keys held at {now}");
                assert!(keys.seen.len() <= 2 * 30, "one live entry per key, plus stale ones of dropped keys: {}", keys.seen.len());
            }
        }
        assert!(expired_total > 100, "the walk expired keys often enough to test it: {expired_total}");
    }

    /// Whatever the arrival order and however releases cut buckets, samples come out once each,
    /// in `(time, partition, offset)` order, and only those before the limit.
    #[test]
    fn time_buckets_release_in_key_order_across_partial_buckets() {
        let mut buckets = TimeBuckets::default();
        // Three partitions, each in its own time order, arriving interleaved and far apart in
        // event time (one lags), with ties on time across partitions.
        let mut arrivals = Vec::new();
        for i in 0..400_i64 {
            arrivals.push(sample(3 * i as u64, 0, i));
            arrivals.push(sample(1_000 + 7 * i as u64, 1, i));
            arrivals.push(sample(1_000 + 7 * i as u64, 2, i));
        }
        let mut released: Vec<(EventTime, SourcePosition)> = Vec::new();
        let mut take = |buckets: &mut TimeBuckets, limit: EventTime| {
            buckets.release_before(limit, |ready| released.extend(ready.map(|s| (s.record.session_time_ms, s.at))));
            assert!(released.iter().all(|(time, _)| *time < limit));
        };
        for (round, chunk) in arrivals.chunks(97).enumerate() {
            buckets.extend(chunk.iter().cloned());
            // Limits that fall inside buckets (not multiples of the bucket width).
            take(&mut buckets, 100 + 37 * round as u64);
            let arrived = &arrivals[..(arrivals.len()).min((round + 1) * 97)];
            let waiting = arrived.iter().map(|s| s.record.session_time_ms).filter(|t| *t >= 100 + 37 * round as u64);
            assert_eq!(buckets.first_time(), waiting.clone().min());
            assert_eq!(buckets.len, waiting.count());
        }
        take(&mut buckets, EventTime::MAX);
        assert_eq!(buckets.len, 0);
        let mut expected: Vec<_> = arrivals.iter().map(|s| (s.record.session_time_ms, s.at)).collect();
        expected.sort();
        assert_eq!(released, expected);
    }
}
