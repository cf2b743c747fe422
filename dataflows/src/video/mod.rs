//! The video fire-detection pipeline's records and logic: the `video-frames` wire format
//! (`frame`), model input and YOLO decoding (`detect`), reading a fire model's outputs (`outputs`), heatmap overlay (`overlay`), per-video
//! assembly (`assemble`) and the dataflow that ties them (`pipeline`).

pub mod assemble;
pub mod detect;
pub mod frame;
pub mod outputs;
pub mod overlay;
pub mod pipeline;
