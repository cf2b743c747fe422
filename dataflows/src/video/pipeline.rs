//! The video dataflow as one function: records of `video-frames` in, per-frame detections and
//! finished videos out.
//!
//! ```text
//! records ─► exchange(video id) ─► infer_batched(fire model) ─┬─► FireDetection per frame
//!                                                              └─► assemble_videos ─► FinishedVideo per video
//! ```

use std::rc::Rc;

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Exchange;
use timely::dataflow::Stream;

use super::assemble::{assemble_videos, AssemblyConfig, AssemblyState, EncoderFactory, FinishedVideo, InferredFrame};
use super::detect::{FireDetection, FireVerdict};
use super::frame::VideoRecord;
use crate::infer::{infer_batched, BatchModel, Batching, InferStats};
use crate::partition::key_route;
use crate::records::{now_ms, EventTime};

/// What the video dataflow computes.
#[derive(Clone, Debug, Default)]
pub struct VideoConfig {
    pub batching: Batching,
    pub assembly: AssemblyConfig,
    /// Named in every detection record.
    pub model_name: String,
}

/// The outputs of the video dataflow.
pub struct VideoOutputs<'s> {
    pub detections: Stream<'s, EventTime, Vec<FireDetection>>,
    pub finished: Stream<'s, EventTime, Vec<FinishedVideo>>,
    /// Every record with its verdict, after inference (this worker's only: `Rc`s, never exchanged).
    pub frames: Stream<'s, EventTime, Vec<InferredFrame>>,
    pub inference: InferStats,
    /// What the assembly holds (videos left unfinished when the input ends).
    pub assembly: AssemblyState,
}

/// Exchanges records by video id (one video's records stay in order on one worker), runs the
/// fire model in batches, and assembles each video. `model` sees frames only.
pub fn video_dataflow<'s, M, F>(records: Stream<'s, EventTime, Vec<VideoRecord>>, model: M, factory: F, config: &VideoConfig) -> VideoOutputs<'s>
where
    M: BatchModel<Item = Rc<VideoRecord>, Output = FireVerdict>,
    F: EncoderFactory,
{
    let shared = records.exchange(|record: &VideoRecord| key_route(&record.header().video_id)).map(Rc::new);
    let (inferred, inference) = infer_batched(shared, "FireModel", model, config.batching);
    let model_name = config.model_name.clone();
    let threshold = config.assembly.fire_threshold;
    let detections = inferred.clone().flat_map(move |(record, verdict): InferredFrame| {
        let VideoRecord::Frame { header, .. } = &*record else { return None };
        let (verdict, error) = match verdict {
            Some(Ok(verdict)) => (Some(verdict), None),
            Some(Err(e)) => (None, Some(e)),
            None => return None,
        };
        let score = verdict.as_ref().map(|v| v.score);
        let (regions, inference_ms) = verdict.map(|v| (v.regions, v.inference_ms)).unwrap_or_default();
        Some(FireDetection {
            video_id: header.video_id.clone(),
            frame_index: header.frame_index,
            pts_ms: header.pts_ms,
            score,
            fire: score.map(|s| s >= threshold),
            regions,
            model: model_name.clone(),
            inference_ms,
            latency_ms: now_ms().saturating_sub(header.produced_at_ms),
            error,
        })
    });
    let (finished, assembly) = assemble_videos(inferred.clone(), factory, config.assembly);
    VideoOutputs { detections, finished, frames: inferred, inference, assembly }
}
