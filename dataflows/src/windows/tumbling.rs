//! Tumbling windows per driver over the lap structure: one window per lap (`LapNumber`) and one
//! per sector (a third of the lap by `RelativeDistance`). A window closes when the driver's next
//! sample belongs to another lap/sector, or when the input ends; its result carries the timely
//! time of its first sample, rounded down to the time granularity (held until then, see `sliding.rs`). Samples without a lap (or relative distance, for sectors) are skipped.

use std::rc::Rc;

use crate::keyed::KeyedLogic;
use crate::records::{EventTime, Sample, SmolStr, TelemetryRecord, WindowKind, WindowResult};
use crate::windows::stats::WindowAccumulator;

/// Which lap segment a tumbling window covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapSegments {
    Lap,
    Sector,
}

/// Sectors per lap: thirds of `RelativeDistance`.
pub const SECTORS_PER_LAP: u8 = 3;

impl LapSegments {
    /// The window a sample belongs to, if it carries what that needs.
    pub fn window_of(&self, record: &TelemetryRecord) -> Option<WindowKind> {
        let lap = record.lap?;
        match self {
            LapSegments::Lap => Some(WindowKind::Lap { lap }),
            LapSegments::Sector => {
                let fraction = record.relative_distance?.clamp(0.0, 1.0);
                let sector = ((fraction * f64::from(SECTORS_PER_LAP)) as u8).min(SECTORS_PER_LAP - 1) + 1;
                Some(WindowKind::Sector { lap, sector })
            }
        }
    }
}

/// The open window of one driver.
#[derive(Default)]
pub struct SegmentState {
    open: Option<(SmolStr, WindowKind, WindowAccumulator)>,
}

impl SegmentState {
    fn close(&mut self, out: &mut Vec<(EventTime, WindowResult)>) {
        if let Some((driver, window, acc)) = self.open.take() {
            let (first, last) = acc.span().expect("an open window has a sample");
            out.push((first, acc.finish(&driver, window, first, last)));
        }
    }
}

impl KeyedLogic for LapSegments {
    type State = SegmentState;
    type Out = WindowResult;

    fn on_sample(&self, state: &mut SegmentState, sample: &Rc<Sample>, out: &mut Vec<(EventTime, WindowResult)>) {
        let Some(window) = self.window_of(&sample.record) else {
            return;
        };
        if state.open.as_ref().is_some_and(|(_, open, _)| *open != window) {
            state.close(out);
        }
        let (_, _, acc) = state.open.get_or_insert_with(|| (sample.record.driver.clone(), window, WindowAccumulator::default()));
        acc.push(&sample.record);
    }

    fn on_progress(&self, state: &mut SegmentState, frontier: Option<EventTime>, out: &mut Vec<(EventTime, WindowResult)>) {
        if frontier.is_none() {
            state.close(out);
        }
    }

    fn hold(&self, state: &SegmentState) -> Option<EventTime> {
        state.open.as_ref().and_then(|(_, _, acc)| acc.span()).map(|(first, _)| first)
    }

    fn is_idle(&self, state: &SegmentState) -> bool {
        state.open.is_none()
    }
}
