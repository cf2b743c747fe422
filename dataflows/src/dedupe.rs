//! Exact duplicates of a driver's sample are dropped before any window or rule sees them.
//!
//! A producer that is not idempotent resends a batch whose acknowledgement it missed, and the
//! broker may keep both copies: the same sample twice, later in the log. Counted twice it
//! confirms its own glitch (one over-rev sample raises an alert: the rules need two consecutive)
//! and weighs double in every window. A sample equal to one of the same driver seen within
//! `horizon_ms` of event time (its time and every value; only `produced_at_ms`, when the copy was
//! sent, may differ) is dropped and counted. The horizon is the allowed lateness: an older copy
//! is already late at the source, so nothing older needs remembering.
//!
//! It runs after the exchange by driver (`keyed::by_driver`), where all of a driver's samples
//! meet on one worker; which copy is kept cannot change a result, since the copies are equal.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use foldhash::fast::RandomState;
use hashbrown::HashMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::keyed::ByDriver;
use crate::records::{DriverCode, EventTime, Sample, TelemetryRecord};

/// Whether two records are the same sample: equal in everything but when they were sent.
fn same_sample(a: &TelemetryRecord, b: &TelemetryRecord) -> bool {
    a.session_time_ms == b.session_time_ms && TelemetryRecord { produced_at_ms: b.produced_at_ms, ..a.clone() } == *b
}

/// One driver's samples within the horizon of its newest, in arrival order.
#[derive(Default)]
struct Recent {
    newest: EventTime,
    samples: VecDeque<Rc<Sample>>,
}

/// The samples of `samples` without exact duplicates (see the module docs), and how many were
/// dropped on this worker.
pub fn drop_duplicate_samples(samples: ByDriver<'_>, horizon_ms: u64) -> (ByDriver<'_>, Rc<Cell<u64>>) {
    let dropped = Rc::new(Cell::new(0_u64));
    let count = dropped.clone();
    let stream = samples.into_stream().unary(Pipeline, "DropDuplicateSamples", move |_initial, _info| {
        // Keyed by the packed driver id (an integer: cheap to hash), foldhash as in `keyed.rs`.
        let mut recent: HashMap<DriverCode, Recent, RandomState> = HashMap::default();
        move |input, output| {
            input.for_each(|cap, data| {
                let before = data.len();
                data.retain(|sample| {
                    let record = &sample.record;
                    let seen = recent.entry(DriverCode::new(&record.driver)).or_default();
                    let time = record.session_time_ms;
                    if seen.samples.iter().any(|s| s.record.session_time_ms == time && same_sample(&s.record, record)) {
                        return false;
                    }
                    // Samples come (nearly) in time order: the expired ones are at the front. One
                    // behind a newer front waits for it, which only remembers it a little longer.
                    seen.newest = seen.newest.max(time);
                    while seen.samples.front().is_some_and(|s| s.record.session_time_ms.saturating_add(horizon_ms) < seen.newest) {
                        seen.samples.pop_front();
                    }
                    seen.samples.push_back(sample.clone());
                    true
                });
                count.set(count.get() + (before - data.len()) as u64);
                if !data.is_empty() {
                    output.session(&cap).give_container(data);
                }
            });
        }
    });
    (ByDriver::from_stream(stream), dropped)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::probe::Handle as ProbeHandle;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Capture, Input, Probe};
    use timely::dataflow::Stream;

    use super::*;
    use crate::keyed::by_driver;
    use crate::records::SourcePosition;

    /// Feeds `records` in order, time advancing with them, to a one-worker dataflow that
    /// `build` makes over the sample stream (returning its probe and a count), and returns the
    /// count once everything has passed the probe.
    fn feed(
        records: Vec<TelemetryRecord>,
        build: impl Fn(Stream<'_, u64, Vec<Sample>>) -> (ProbeHandle<u64>, Rc<Cell<u64>>) + Send + Sync + 'static,
    ) -> u64 {
        timely::execute(timely::Config::thread(), move |worker| {
            let (mut input, probe, count) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, samples) = scope.new_input::<Vec<Sample>>();
                let (probe, count) = build(samples);
                (input, probe, count)
            });
            for (offset, record) in records.iter().enumerate() {
                input.advance_to(record.session_time_ms.max(*input.time()));
                input.send(Sample { at: SourcePosition { partition: 0, offset: offset as i64 }, record: record.clone() });
            }
            drop(input);
            while !probe.done() {
                worker.step();
            }
            count.get()
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .sum()
    }

    /// The filter alone over `records`: the kept samples as (time, offset), sorted, and the
    /// duplicates dropped.
    fn run(records: Vec<TelemetryRecord>, horizon_ms: u64) -> (Vec<(EventTime, i64)>, u64) {
        let (sender, receiver) = std::sync::mpsc::channel();
        let dropped = feed(records, move |samples| {
            let (kept, dropped) = drop_duplicate_samples(by_driver(samples), horizon_ms);
            let out = kept.into_stream().map(|s: Rc<Sample>| (s.record.session_time_ms, s.at.offset));
            out.clone().capture_into(sender.clone());
            (out.probe().0, dropped)
        });
        let mut kept: Vec<(EventTime, i64)> = receiver.extract().into_iter().flat_map(|(_, v)| v).collect();
        kept.sort();
        (kept, dropped)
    }

    #[test]
    fn an_exact_copy_within_the_horizon_is_dropped_and_counted_and_nothing_else() {
        let at = |t: u64| TelemetryRecord::example("VER", t);
        let resent = TelemetryRecord { produced_at_ms: Some(99), ..at(1_000) };
        let records = vec![
            at(1_000),
            at(1_250),
            resent,                                        // the same sample, resent later: dropped
            TelemetryRecord { speed: 281.0, ..at(1_250) }, // same time, another value: kept
            TelemetryRecord::example("HAM", 1_000),        // same time, another driver: kept
            at(1_500),
            at(1_250), // a second copy of 1,250: dropped
            at(3_000),
            at(1_500), // older than the horizon: not remembered, kept (the source calls it late)
        ];
        let (kept, dropped) = run(records, 500);
        assert_eq!(dropped, 2);
        assert_eq!(kept.iter().map(|(_, offset)| *offset).collect::<Vec<_>>(), vec![0, 4, 1, 3, 5, 8, 7]);
    }

    /// The whole telemetry dataflow over `records` (one worker): its alert ids, the samples its
    /// windows counted (summed over windows), and the duplicates dropped.
    fn alerts_and_windows(records: Vec<TelemetryRecord>) -> (Vec<String>, u64, u64) {
        use crate::pipeline::{telemetry_dataflow, TelemetryConfig};
        let (alerts_tx, alerts_rx) = std::sync::mpsc::channel();
        let (windows_tx, windows_rx) = std::sync::mpsc::channel();
        let dropped = feed(records, move |samples| {
            let outputs = telemetry_dataflow(samples, &TelemetryConfig::default());
            outputs.alerts.map(|a| a.id).capture_into(alerts_tx.clone());
            let probe = outputs.windows.clone().probe().0;
            outputs.windows.map(|w| w.count).capture_into(windows_tx.clone());
            (probe, outputs.duplicates)
        });
        let alerts: Vec<String> = alerts_rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        let windows = windows_rx.extract().into_iter().flat_map(|(_, v)| v).sum();
        (alerts, windows, dropped)
    }

    #[test]
    fn a_resent_over_rev_sample_does_not_confirm_itself_and_windows_count_it_once() {
        // 20 s of a car at 11,000 RPM with one glitch at 12,800: the rule needs two consecutive
        // samples, so one glitch raises nothing.
        let clean: Vec<TelemetryRecord> = (0..80)
            .map(|i| {
                let sample = TelemetryRecord::example("VER", 60_000 + i * 250);
                if i == 40 {
                    TelemetryRecord { rpm: 12_800.0, ..sample }
                } else {
                    sample
                }
            })
            .collect();
        let mut resent = clean.clone();
        // The producer resends the glitch at once (two over-revs in a row, as the rule sees them)
        // and, later, a sample it had already sent two samples back.
        resent.insert(41, TelemetryRecord { produced_at_ms: Some(1), ..clean[40].clone() });
        resent.insert(64, clean[61].clone());
        let (clean_alerts, clean_windows, none) = alerts_and_windows(clean);
        let (alerts, windows, dropped) = alerts_and_windows(resent);
        assert!(clean_alerts.iter().all(|id| !id.contains("over_rev")), "{clean_alerts:?}");
        assert_eq!((alerts, windows, dropped), (clean_alerts, clean_windows, 2), "the resent samples change nothing");
        assert_eq!(none, 0);
    }
}
