//! After a crash: outputs the crashed run had already delivered are not sent again.
//!
//! The Kafka source records with every offset commit the time before which every output had
//! been delivered (the commit metadata; see `connectors/src/kafka/source.rs`). On restart the
//! job replays from the committed offsets, re-deriving some outputs; [`drop_delivered`] drops
//! those whose timely time is before the mark their key's records were read under (which mark:
//! `mark_for` in `connectors/src/kafka/source/mod.rs`). It is exact because
//! an output's time is the time of the earliest sample it depends on that is still held (a
//! window's first sample, an alert's detecting sample), rounded down to the keyed operators'
//! time granularity, a function of the data alone: outputs at earlier times had passed the
//! probe after the sinks, and outputs at later times depend only on samples after the commit.
//! (So the granularity must not change between a crash and its restart.)

use std::cell::Cell;
use std::rc::Rc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::records::EventTime;

/// Passes `stream` on without the records whose time is before `before(record)` (`None`: keep),
/// handing each dropped record to `on_drop` (to release what it holds, e.g. a spooled file).
/// Returns the stream and the count of records dropped.
pub fn drop_delivered<'s, T: Clone + 'static>(
    stream: Stream<'s, EventTime, Vec<T>>,
    name: &str,
    before: impl Fn(&T) -> Option<EventTime> + 'static,
    mut on_drop: impl FnMut(&T) + 'static,
) -> (Stream<'s, EventTime, Vec<T>>, Rc<Cell<u64>>) {
    let dropped = Rc::new(Cell::new(0_u64));
    let count = dropped.clone();
    let stream = stream.unary(Pipeline, name, move |_initial, _info| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else { return };
                let time = *cap.time();
                let before_count = data.len();
                // In place, and the batch passed on whole: no copy of each record.
                data.retain(|record| {
                    let keep = before(record).is_none_or(|mark| time >= mark);
                    if !keep {
                        on_drop(record);
                    }
                    keep
                });
                count.set(count.get() + (before_count - data.len()) as u64);
                if !data.is_empty() {
                    output.session(&cap).give_container(data);
                }
            });
        }
    });
    (stream, dropped)
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::{Capture, Input, Probe};

    use super::*;

    #[test]
    fn drops_only_records_before_their_mark() {
        let (captured, dropped, released) = timely::execute_directly(|worker| {
            let released = Rc::new(std::cell::RefCell::new(Vec::new()));
            let (mut input, probe, captured, dropped) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<(u8, u64)>>();
                let released = released.clone();
                let (out, dropped) = drop_delivered(
                    stream,
                    "Test",
                    |(partition, _): &(u8, u64)| (*partition == 0).then_some(100),
                    move |(_, id)| released.borrow_mut().push(*id),
                );
                (input, out.clone().probe().0, out.capture(), dropped)
            });
            for (time, record) in [(50, (0, 1)), (50, (1, 2)), (99, (0, 3)), (100, (0, 4)), (150, (0, 5))] {
                input.advance_to(time);
                input.send(record);
            }
            input.close();
            while !probe.done() {
                worker.step();
            }
            let released: Vec<u64> = released.borrow().clone();
            (captured, dropped.get(), released)
        });
        let kept: Vec<u64> = captured.extract().into_iter().flat_map(|(_, records)| records.into_iter().map(|(_, id)| id)).collect();
        assert_eq!(kept, [2, 4, 5], "partition 0 before 100 is dropped, partition 1 has no mark");
        assert_eq!(dropped, 2);
        assert_eq!(released, [1, 3], "each dropped record is handed over once");
    }
}
