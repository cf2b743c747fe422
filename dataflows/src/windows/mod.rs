//! Rolling windows per driver on event time: sliding (`sliding.rs`) and lap/sector tumbling
//! (`tumbling.rs`), sharing one aggregate (`stats.rs`).

pub mod sliding;
pub mod stats;
pub mod tumbling;

pub use sliding::{SlidingWindows, WindowShapeError};
pub use stats::WindowAccumulator;
pub use tumbling::LapSegments;
