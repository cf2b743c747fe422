//! The video fire-detection pipeline's records and logic: the `video-frames` wire format
//! (`frame`), model input/output handling (`detect`), heatmap overlay (`overlay`), per-video
//! assembly (`assemble`) and the dataflow that ties them (`pipeline`).

pub mod assemble;
pub mod detect;
pub mod frame;
pub mod overlay;
pub mod pipeline;
