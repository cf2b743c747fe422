//! `infer_batched`: one model-inference operator for both pipelines. It gathers the items a
//! model wants into batches (up to `max_batch`, or whatever has waited `max_wait`), runs the
//! model once per batch, and emits every item with its result, in arrival order. Items the model
//! does not want (an end-of-video marker) pass through in order: a batch is cut before them.
//!
//! The model itself (ONNX Runtime) is a connector; this operator only sees [`BatchModel`], so
//! tests drive it with a plain function.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::records::EventTime;

/// A model run on batches of items.
pub trait BatchModel: 'static {
    type Item: Clone + 'static;
    type Output: Clone + 'static;

    /// Whether `item` goes through the model; the others pass through with no result.
    fn wants(&self, item: &Self::Item) -> bool;

    /// One output per item, in order, or why the whole batch failed.
    fn run(&mut self, batch: &[Self::Item]) -> Result<Vec<Self::Output>, String>;
}

/// How items are batched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batching {
    pub max_batch: usize,
    /// The longest an item waits for its batch to fill.
    pub max_wait: Duration,
}

/// Most items per model run unless configured (`--infer-batch`).
pub const DEFAULT_INFER_BATCH: usize = 8;
/// Longest an item waits for its batch to fill unless configured, ms (`--infer-wait-ms`).
pub const DEFAULT_INFER_WAIT_MS: u64 = 20;

impl Default for Batching {
    fn default() -> Self {
        Batching { max_batch: DEFAULT_INFER_BATCH, max_wait: Duration::from_millis(DEFAULT_INFER_WAIT_MS) }
    }
}

/// An item and what the model said about it: `None` for pass-through items.
pub type Inferred<M> = (<M as BatchModel>::Item, Option<Result<<M as BatchModel>::Output, String>>);

/// Counts of one worker's inference operator.
#[derive(Clone, Debug, Default)]
pub struct InferStats {
    pub batches: Rc<Cell<u64>>,
    pub items: Rc<Cell<u64>>,
    pub failed_items: Rc<Cell<u64>>,
    /// Why the newest failed batch failed.
    pub last_error: Rc<RefCell<Option<String>>>,
    /// Wall time spent inside the model, in microseconds.
    pub model_us: Rc<Cell<u64>>,
}

/// See the module docs. Holds its capability at the oldest waiting item, so downstream probes
/// (and the source's offset commits) do not pass an item before its result is out.
pub fn infer_batched<'s, M: BatchModel>(
    items: Stream<'s, EventTime, Vec<M::Item>>,
    name: &str,
    mut model: M,
    batching: Batching,
) -> (Stream<'s, EventTime, Vec<Inferred<M>>>, InferStats) {
    let stats = InferStats::default();
    let counts = stats.clone();
    let scope = items.scope();
    let max_batch = batching.max_batch.max(1);
    let operator = name.to_string();
    let stream = items.unary_frontier(Pipeline, name, move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut held: Option<Capability<EventTime>> = Some(initial);
        let mut pending: VecDeque<(EventTime, Instant, M::Item)> = VecDeque::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                // Every message of a timestamped stream carries a time (`least` is `None` only
                // for data sent under no capability, which no pitwall operator does).
                let time = cap.least().copied().unwrap_or_default();
                let now = Instant::now();
                pending.extend(data.drain(..).map(|item| (time, now, item)));
            });
            let Some(cap) = held.as_mut() else {
                pending.clear();
                return;
            };
            let frontier: Option<EventTime> = frontier.frontier().first().copied();
            loop {
                let run = pending.iter().take_while(|(_, _, item)| model.wants(item)).count();
                if run == 0 {
                    let Some((time, _, item)) = pending.pop_front() else { break };
                    output.session(&cap.delayed(&time)).give((item, None));
                    continue;
                }
                let waited = pending.front().map(|(_, at, _)| at.elapsed()).unwrap_or_default();
                let cut_short = run < pending.len() || frontier.is_none() || waited >= batching.max_wait;
                if run < max_batch && !cut_short {
                    activator.activate_after(batching.max_wait - waited);
                    break;
                }
                let batch: Vec<(EventTime, Instant, M::Item)> = pending.drain(..run.min(max_batch)).collect();
                let inputs: Vec<M::Item> = batch.iter().map(|(_, _, item)| item.clone()).collect();
                let started = Instant::now();
                let result = model.run(&inputs).and_then(|outputs| {
                    if outputs.len() == inputs.len() {
                        Ok(outputs)
                    } else {
                        Err(format!("model returned {} outputs for a batch of {}", outputs.len(), inputs.len()))
                    }
                });
                counts.model_us.set(counts.model_us.get() + started.elapsed().as_micros() as u64);
                counts.batches.set(counts.batches.get() + 1);
                counts.items.set(counts.items.get() + inputs.len() as u64);
                let results: Vec<Result<M::Output, String>> = match result {
                    Ok(outputs) => outputs.into_iter().map(Ok).collect(),
                    Err(reason) => {
                        tracing::warn!(%operator, items = inputs.len(), %reason, "model run failed");
                        counts.failed_items.set(counts.failed_items.get() + inputs.len() as u64);
                        *counts.last_error.borrow_mut() = Some(reason.clone());
                        inputs.iter().map(|_| Err(reason.clone())).collect()
                    }
                };
                for ((time, _, item), result) in batch.into_iter().zip(results) {
                    output.session(&cap.delayed(&time)).give((item, Some(result)));
                }
            }
            match pending.front().map(|(time, _, _)| *time).into_iter().chain(frontier).min() {
                Some(time) => cap.downgrade(&time.max(*cap.time())),
                None => held = None,
            }
        }
    });
    (stream, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Input, Probe};

    /// Doubles even numbers, lets odd ones (markers) through, fails batches holding 13 * 2.
    struct Doubler {
        batches: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl BatchModel for Doubler {
        type Item = u64;
        type Output = u64;
        fn wants(&self, item: &u64) -> bool {
            item % 2 == 0
        }
        fn run(&mut self, batch: &[u64]) -> Result<Vec<u64>, String> {
            self.batches.lock().unwrap().push(batch.len());
            if batch.contains(&26) {
                return Err("26 is cursed".into());
            }
            Ok(batch.iter().map(|x| x * 2).collect())
        }
    }

    #[test]
    fn batches_in_order_around_pass_through_items() {
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let captured = timely::execute_directly(move |worker| {
            let (mut input, probe, captured) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<u64>>();
                let (out, _) =
                    infer_batched(stream, "Doubler", Doubler { batches: seen.clone() }, Batching { max_batch: 3, max_wait: Duration::from_secs(60) });
                (input, out.clone().probe().0, out.capture())
            });
            for x in [2, 4, 6, 8, 1, 10, 26, 28, 3] {
                input.send(x);
            }
            input.advance_to(5);
            input.close();
            while !probe.done() {
                worker.step();
            }
            captured
        });
        // In emission order (`extract` would sort).
        let got: Vec<(u64, Option<Result<u64, String>>)> = captured
            .try_iter()
            .flat_map(|event| match event {
                Event::Messages(_, items) => items,
                Event::Progress(_) => Vec::new(),
            })
            .collect();
        let expected: Vec<(u64, Option<Result<u64, String>>)> = vec![
            (2, Some(Ok(4))),
            (4, Some(Ok(8))),
            (6, Some(Ok(12))),
            (8, Some(Ok(16))),
            (1, None),
            (10, Some(Err("26 is cursed".into()))),
            (26, Some(Err("26 is cursed".into()))),
            (28, Some(Err("26 is cursed".into()))),
            (3, None),
        ];
        assert_eq!(got, expected);
        // A full batch of 3, the run cut short by the marker, then 10, 26, 28 as one batch.
        assert_eq!(*sizes.lock().unwrap(), vec![3, 1, 3]);
    }
}
