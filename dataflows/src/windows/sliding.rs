//! Event-time sliding windows per driver: `[k*slide, k*slide + length)`, emitted once the
//! watermark has passed their end. Windows without samples are not emitted. A window's result
//! carries the timely time of its first sample: the operator holds its capability there while
//! the window is open, so a probe after the sink passes that time only once the window is
//! delivered, and a restart that replays from a commit made then sees the whole window.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::keyed::KeyedLogic;
use crate::records::{EventTime, Sample, WindowKind, WindowResult};
use crate::windows::stats::WindowAccumulator;

/// Sliding window shape; the defaults are 5 s long, sliding by 1 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    pub length_ms: u64,
    pub slide_ms: u64,
}

impl Default for SlidingWindows {
    fn default() -> Self {
        SlidingWindows { length_ms: 5_000, slide_ms: 1_000 }
    }
}

impl SlidingWindows {
    pub fn new(length_ms: u64, slide_ms: u64) -> SlidingWindows {
        assert!(slide_ms > 0 && length_ms >= slide_ms, "need 0 < slide <= length");
        SlidingWindows { length_ms, slide_ms }
    }

    /// Start of the earliest window that contains `time`.
    pub fn first_start(&self, time: EventTime) -> EventTime {
        let earliest = (time + 1).saturating_sub(self.length_ms);
        earliest.div_ceil(self.slide_ms) * self.slide_ms
    }

    /// Starts of all windows containing `time`.
    pub fn starts(&self, time: EventTime) -> impl Iterator<Item = EventTime> + '_ {
        (self.first_start(time)..=time).step_by(self.slide_ms as usize)
    }
}

/// One driver's samples still inside some open window.
#[derive(Default)]
pub struct SlidingState {
    /// Shared with the other keyed operators: no copy per window operator.
    samples: VecDeque<Rc<Sample>>,
    /// Start of the earliest window not yet emitted.
    next_start: Option<EventTime>,
}

impl KeyedLogic for SlidingWindows {
    type State = SlidingState;
    type Out = WindowResult;

    fn on_sample(&self, state: &mut SlidingState, sample: &Rc<Sample>, _out: &mut Vec<(EventTime, WindowResult)>) {
        let time = sample.record.session_time_ms;
        if state.next_start.is_none() {
            state.next_start = Some(self.first_start(time));
        }
        state.samples.push_back(sample.clone());
    }

    fn on_progress(&self, state: &mut SlidingState, frontier: Option<EventTime>, out: &mut Vec<(EventTime, WindowResult)>) {
        let limit = frontier.unwrap_or(EventTime::MAX);
        while let Some(start) = state.next_start {
            let end = start + self.length_ms;
            if end > limit {
                break;
            }
            let mut acc = WindowAccumulator::default();
            for sample in state.samples.iter().take_while(|s| s.record.session_time_ms < end) {
                if sample.record.session_time_ms >= start {
                    acc.push(&sample.record);
                }
            }
            if let Some((first, _)) = acc.span() {
                let driver = &state.samples.front().expect("non-empty window").record.driver;
                out.push((first, acc.finish(driver, WindowKind::Sliding, start, end)));
            }
            let next = start + self.slide_ms;
            while state.samples.front().is_some_and(|s| s.record.session_time_ms < next) {
                state.samples.pop_front();
            }
            state.next_start = state.samples.front().map(|s| next.max(self.first_start(s.record.session_time_ms)));
        }
    }

    fn wake_at(&self, state: &SlidingState) -> Option<EventTime> {
        state.next_start.map(|start| start + self.length_ms)
    }

    fn hold(&self, state: &SlidingState) -> Option<EventTime> {
        state.samples.front().map(|s| s.record.session_time_ms)
    }

    fn is_idle(&self, state: &SlidingState) -> bool {
        state.samples.is_empty()
    }

    fn approx_bytes(&self, state: &SlidingState) -> usize {
        std::mem::size_of::<SlidingState>() + state.samples.len() * std::mem::size_of::<Sample>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_cover_exactly_the_windows_containing_a_time() {
        let w = SlidingWindows::new(5_000, 1_000);
        assert_eq!(w.starts(0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(w.starts(4_999).collect::<Vec<_>>(), vec![0, 1_000, 2_000, 3_000, 4_000]);
        assert_eq!(w.starts(5_000).collect::<Vec<_>>(), vec![1_000, 2_000, 3_000, 4_000, 5_000]);
        let w = SlidingWindows::new(2_500, 1_000);
        assert_eq!(w.starts(3_700).collect::<Vec<_>>(), vec![2_000, 3_000]);
    }
}
