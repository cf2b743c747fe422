//! Event-time sliding windows per driver: `[k*slide, k*slide + length)`, emitted once the
//! watermark has passed their end. Windows without samples are not emitted. A window's result
//! carries the timely time of its first sample (rounded down to the keyed operators' time
//! granularity, `keyed.rs`): the operator holds its capability there while the window is open,
//! so a probe after the sink passes that time only once the window is delivered, and a restart
//! that replays from a commit made then sees the whole window.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::keyed::KeyedLogic;
use crate::records::{EventTime, Sample, SmolStr, WindowKind, WindowResult};
use crate::windows::stats::WindowAccumulator;

/// Sliding window shape; the defaults are 5 s long, sliding by 1 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    pub length_ms: u64,
    pub slide_ms: u64,
}

impl SlidingWindows {
    /// The default window length: 5 s of event time (`--window-length-ms`).
    pub const DEFAULT_LENGTH_MS: u64 = 5_000;
    /// The default slide: 1 s of event time (`--window-slide-ms`).
    pub const DEFAULT_SLIDE_MS: u64 = 1_000;
}

impl Default for SlidingWindows {
    fn default() -> Self {
        SlidingWindows { length_ms: SlidingWindows::DEFAULT_LENGTH_MS, slide_ms: SlidingWindows::DEFAULT_SLIDE_MS }
    }
}

/// A sliding window shape that cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a sliding window needs 0 < slide <= length (got length {length_ms} ms, slide {slide_ms} ms)")]
pub struct WindowShapeError {
    pub length_ms: u64,
    pub slide_ms: u64,
}

impl SlidingWindows {
    /// A window shape; panics on one [`SlidingWindows::try_new`] refuses (for literals).
    pub fn new(length_ms: u64, slide_ms: u64) -> SlidingWindows {
        SlidingWindows::try_new(length_ms, slide_ms).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A window shape from user input: a zero slide, or one longer than the window (samples
    /// between windows would belong to none), is an error.
    pub fn try_new(length_ms: u64, slide_ms: u64) -> Result<SlidingWindows, WindowShapeError> {
        if slide_ms == 0 || slide_ms > length_ms {
            return Err(WindowShapeError { length_ms, slide_ms });
        }
        Ok(SlidingWindows { length_ms, slide_ms })
    }

    /// Start of the earliest window that contains `time`.
    pub fn first_start(&self, time: EventTime) -> EventTime {
        // Saturating: event times are bounded at decode (`decode::MAX_SESSION_TIME_MS`), and
        // these sums must not panic or wrap even for a time at the top of the range.
        let earliest = time.saturating_add(1).saturating_sub(self.length_ms);
        earliest.div_ceil(self.slide_ms).saturating_mul(self.slide_ms)
    }

    /// Starts of all windows containing `time`.
    pub fn starts(&self, time: EventTime) -> impl Iterator<Item = EventTime> + '_ {
        (self.first_start(time)..=time).step_by(self.slide_ms as usize)
    }

    /// Width of a pane: the greatest common divisor of length and slide, so every window is a
    /// run of whole panes.
    fn pane_ms(&self) -> u64 {
        let (mut a, mut b) = (self.length_ms, self.slide_ms);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
}

/// One driver's open windows as panes: the time line cut at every multiple of the greatest
/// common divisor of length and slide, so each window is a run of whole panes. A sample is pushed
/// once, into its pane, instead of once per window that contains it; a window merges its panes.
#[derive(Default)]
pub struct SlidingState {
    driver: SmolStr,
    /// Non-empty panes still inside some open window, oldest first: (pane start, aggregate).
    panes: VecDeque<(EventTime, WindowAccumulator)>,
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
            if state.driver.is_empty() {
                state.driver = sample.record.driver.clone();
            }
        }
        let pane = time - time % self.pane_ms();
        match state.panes.back_mut() {
            // Samples come in event-time order: a sample's pane is the newest or a new one.
            Some((start, acc)) if *start >= pane => acc.push(&sample.record),
            _ => {
                let mut acc = WindowAccumulator::default();
                acc.push(&sample.record);
                state.panes.push_back((pane, acc));
            }
        }
    }

    fn on_progress(&self, state: &mut SlidingState, frontier: Option<EventTime>, out: &mut Vec<(EventTime, WindowResult)>) {
        let limit = frontier.unwrap_or(EventTime::MAX);
        while let Some(start) = state.next_start {
            let end = start.saturating_add(self.length_ms);
            if end > limit {
                break;
            }
            let mut acc = WindowAccumulator::default();
            for (_, pane) in state.panes.iter().take_while(|(pane, _)| *pane < end).filter(|(pane, _)| *pane >= start) {
                acc.merge(pane);
            }
            if let Some((first, _)) = acc.span() {
                out.push((first, acc.finish(&state.driver, WindowKind::Sliding, start, end)));
            }
            let next = start.saturating_add(self.slide_ms);
            while state.panes.front().is_some_and(|(pane, _)| *pane < next) {
                state.panes.pop_front();
            }
            state.next_start = self.hold(state).map(|first| next.max(self.first_start(first)));
        }
    }

    fn wake_at(&self, state: &SlidingState) -> Option<EventTime> {
        state.next_start.map(|start| start.saturating_add(self.length_ms))
    }

    /// The oldest sample still in an open window: the time its first window is emitted at.
    fn hold(&self, state: &SlidingState) -> Option<EventTime> {
        state.panes.front().and_then(|(_, acc)| acc.span()).map(|(first, _)| first)
    }

    fn is_idle(&self, state: &SlidingState) -> bool {
        state.panes.is_empty()
    }

    fn approx_bytes(&self, state: &SlidingState) -> usize {
        std::mem::size_of::<SlidingState>() + state.panes.len() * std::mem::size_of::<(EventTime, WindowAccumulator)>()
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

    #[test]
    fn a_zero_slide_or_a_slide_past_the_length_is_refused_with_both_figures() {
        assert_eq!(SlidingWindows::try_new(5_000, 5_000), Ok(SlidingWindows { length_ms: 5_000, slide_ms: 5_000 }));
        for (length_ms, slide_ms) in [(5_000, 0), (5_000, 20_000), (0, 0)] {
            let error = SlidingWindows::try_new(length_ms, slide_ms).unwrap_err();
            assert_eq!(error, WindowShapeError { length_ms, slide_ms });
            let text = error.to_string();
            assert!(text.contains(&format!("length {length_ms} ms")) && text.contains(&format!("slide {slide_ms} ms")), "{text}");
        }
    }
}
