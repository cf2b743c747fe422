//! `keyed_in_time_order`: the one operator every per-driver computation runs in.
//!
//! Samples are exchanged by key, buffered until the input frontier (the source watermark) has
//! passed their event time, then handed to per-key logic in `(time, partition, offset)` order.
//! That order, not arrival order, decides every result, which is what makes results identical
//! at any worker count, process count or read batch size.
//!
//! The operator holds one capability at the earliest time it may still emit: the frontier,
//! the oldest buffered sample, or the oldest time a key's logic still holds (an open window).
//! Downstream probes therefore pass a time only once every output derived from samples at or
//! before it has been emitted, which is what the Kafka source relies on to commit offsets.

use std::collections::HashMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Exchange};
use timely::dataflow::Stream;

use crate::partition::key_route;
use crate::records::{EventTime, Sample};

/// Per-key logic driven in event-time order. One `State` per key (driver).
pub trait KeyedLogic: 'static {
    type State: Default + 'static;
    type Out: Clone + 'static;

    /// One sample of a key, in `(time, partition, offset)` order. Outputs are `(time, record)`
    /// with `time >= sample time` or `>= self.hold(state)` as it was before this call.
    fn on_sample(&self, state: &mut Self::State, sample: &Sample, out: &mut Vec<(EventTime, Self::Out)>);

    /// Every sample earlier than `frontier` has been seen (`None`: the input has ended).
    fn on_progress(&self, _state: &mut Self::State, _frontier: Option<EventTime>, _out: &mut Vec<(EventTime, Self::Out)>) {}

    /// The earliest time this key may still emit at, apart from samples not yet seen.
    fn hold(&self, _state: &Self::State) -> Option<EventTime> {
        None
    }

    /// Whether a key's state can be dropped (nothing held, nothing to remember).
    fn is_idle(&self, _state: &Self::State) -> bool {
        false
    }
}

/// Samples exchanged so that all samples of a driver are on one worker. The only way to make
/// one is [`by_driver`], so keyed operators cannot be fed an unpartitioned stream by mistake,
/// and several keyed operators share one exchange.
#[derive(Clone)]
pub struct ByDriver<'s>(Stream<'s, EventTime, Vec<Sample>>);

/// Exchanges samples by driver.
pub fn by_driver(samples: Stream<'_, EventTime, Vec<Sample>>) -> ByDriver<'_> {
    ByDriver(samples.exchange(|sample: &Sample| key_route(&sample.record.driver)))
}

/// Runs `logic` per driver over `samples` in event-time order. See the module docs.
pub fn keyed_in_time_order<'s, L: KeyedLogic>(samples: &ByDriver<'s>, name: &str, logic: L) -> Stream<'s, EventTime, Vec<L::Out>> {
    samples.0.clone().unary_frontier(Pipeline, name, move |initial, _info| {
        let mut held: Option<Capability<EventTime>> = Some(initial);
        let mut pending: Vec<Sample> = Vec::new();
        let mut states: HashMap<String, L::State> = HashMap::new();
        let mut last_frontier: Option<Option<EventTime>> = None;
        let mut out: Vec<(EventTime, L::Out)> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| pending.append(data));
            let Some(cap) = held.as_mut() else {
                pending.clear();
                return;
            };
            let frontier: Option<EventTime> = frontier.frontier().first().copied();
            let ready_limit = frontier.unwrap_or(EventTime::MAX);

            if pending.iter().any(|s| s.record.session_time_ms < ready_limit) || frontier.is_none() {
                let (mut ready, rest): (Vec<Sample>, Vec<Sample>) =
                    pending.drain(..).partition(|s| s.record.session_time_ms < ready_limit || frontier.is_none());
                pending = rest;
                ready.sort_by_key(|s| (s.record.session_time_ms, s.at));
                for sample in &ready {
                    let state = states.entry(sample.record.driver.clone()).or_default();
                    logic.on_sample(state, sample, &mut out);
                }
            }
            if last_frontier != Some(frontier) {
                last_frontier = Some(frontier);
                for state in states.values_mut() {
                    logic.on_progress(state, frontier, &mut out);
                }
                states.retain(|_, state| !logic.is_idle(state));
            }

            if !out.is_empty() {
                out.sort_by_key(|(time, _)| *time);
                let mut batch = out.drain(..).peekable();
                while let Some((time, first)) = batch.next() {
                    debug_assert!(
                        time >= *cap.time(),
                        "{name_hint} emitted at {time} before its hold {}",
                        cap.time(),
                        name_hint = "keyed_in_time_order"
                    );
                    let at = cap.delayed(&time.max(*cap.time()));
                    let mut session = output.session(&at);
                    session.give(first);
                    while let Some((_, next)) = batch.next_if(|(t, _)| *t == time) {
                        session.give(next);
                    }
                }
            }

            let hold =
                pending.iter().map(|s| s.record.session_time_ms).chain(states.values().filter_map(|state| logic.hold(state))).chain(frontier).min();
            match hold {
                Some(time) => cap.downgrade(&time.max(*cap.time())),
                None => held = None,
            }
        }
    })
}
