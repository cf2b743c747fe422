//! Per-video assembly: each worker keeps the state of the videos routed to it, overlays every
//! frame's heatmap and streams it to that video's encoder (no video is held as raw frames), and
//! on the end-of-video marker finishes the file and emits a [`FinishedVideo`].
//!
//! The operator holds a capability at the time of each in-flight video's first frame, so the
//! source does not commit past a video until its completion is out: after a crash the whole
//! video is read again rather than resumed half-encoded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::detect::FireVerdict;
use super::frame::{FrameHeader, RgbImage, VideoRecord};
use super::overlay::{overlay_heatmap, OverlayStyle};
use crate::records::{now_ms, EventTime};

/// Why an encoder could not open, take a frame or finish: the adapter's own error, kept whole
/// (its `Display` goes into the video's completion).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub Box<dyn std::error::Error + Send + Sync>);

impl EncodeError {
    /// Wraps any error the adapter has.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> EncodeError {
        EncodeError(Box::new(error))
    }
}

/// Where one video's overlayed frames go, in order.
pub trait VideoEncoder {
    fn push(&mut self, frame: &RgbImage) -> Result<(), EncodeError>;
    /// Flushes and closes the file.
    fn finish(self: Box<Self>) -> Result<EncodedVideo, EncodeError>;
}

/// Opens an encoder for a new video (its first frame's header gives size and frame rate).
pub trait EncoderFactory: 'static {
    fn start(&mut self, first: &FrameHeader) -> Result<Box<dyn VideoEncoder>, EncodeError>;
}

/// A finished file.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedVideo {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Published to `video-completions` (keyed by video id) once the overlayed video is stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoCompletion {
    pub video_id: String,
    /// Frames encoded into the overlayed video.
    pub frames: u64,
    /// Frames the producer said it sent (the end marker), if it said.
    pub expected_frames: Option<u64>,
    /// Frame indexes never received, and frames received twice (skipped).
    pub missing_frames: u64,
    pub duplicate_frames: u64,
    pub fire_frames: u64,
    pub max_score: f32,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration_s: f64,
    /// `videos/<video_id>_with_heatmaps.mp4`.
    pub key: String,
    /// Where the video was stored (`s3://bucket/key` or a local path); set by the uploader.
    pub location: Option<String>,
    pub bytes: u64,
    /// The end marker's production time to the file being finished, in ms.
    pub end_to_encoded_ms: u64,
    /// The end marker's production time to the video being stored (set by the uploader).
    pub end_to_stored_ms: Option<u64>,
    /// Why the video is incomplete or was not stored, if it is or was not.
    pub error: Option<String>,
}

/// The object key of a video's overlayed file.
pub fn video_key(video_id: &str) -> String {
    format!("videos/{video_id}_with_heatmaps.mp4")
}

/// A completion plus the file to store.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedVideo {
    pub completion: VideoCompletion,
    pub file: Option<EncodedVideo>,
    /// The end marker's production time (ms since the epoch), for latency.
    pub end_produced_at_ms: u64,
}

/// How videos are assembled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AssemblyConfig {
    pub overlay: OverlayStyle,
    /// A frame scoring at or above this counts as a fire frame.
    pub fire_threshold: f32,
    /// A video with no frame for this long is finished without its end marker (marked incomplete).
    pub idle_timeout: Duration,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig { overlay: OverlayStyle::default(), fire_threshold: 0.5, idle_timeout: Duration::from_secs(300) }
    }
}

/// A frame or marker with its inference result (`None` for markers), shared, not copied.
pub type InferredFrame = (Rc<VideoRecord>, Option<Result<FireVerdict, String>>);

struct InFlight {
    /// At the time of the video's first frame: released when the video finishes.
    hold: Capability<EventTime>,
    first: FrameHeader,
    encoder: Option<Box<dyn VideoEncoder>>,
    error: Option<String>,
    next_index: u64,
    frames: u64,
    missing: u64,
    duplicates: u64,
    fire_frames: u64,
    max_score: f32,
    last_frame: Instant,
}

impl InFlight {
    fn frame(&mut self, header: &FrameHeader, image: &RgbImage, verdict: Option<&Result<FireVerdict, String>>, config: &AssemblyConfig) {
        if header.frame_index < self.next_index {
            self.duplicates += 1;
            return;
        }
        self.missing += header.frame_index - self.next_index;
        self.next_index = header.frame_index + 1;
        self.last_frame = Instant::now();
        if image.width != self.first.width || image.height != self.first.height {
            self.missing += 1;
            tracing::warn!(video = %header.video_id, frame = header.frame_index, "frame size changed mid-video; frame skipped");
            return;
        }
        let mut overlayed = image.clone();
        if let Some(Ok(verdict)) = verdict {
            self.max_score = self.max_score.max(verdict.score);
            if verdict.score >= config.fire_threshold {
                self.fire_frames += 1;
            }
            if let Some(heatmap) = &verdict.heatmap {
                overlay_heatmap(&mut overlayed, heatmap, config.overlay);
            }
        }
        if let Some(encoder) = self.encoder.as_mut() {
            match encoder.push(&overlayed) {
                Ok(()) => self.frames += 1,
                Err(e) => {
                    self.error = Some(format!("encoding frame {}: {e}", header.frame_index));
                    self.encoder = None;
                }
            }
        }
    }

    fn finish(mut self, end: Option<&FrameHeader>) -> (Capability<EventTime>, FinishedVideo) {
        let file = match self.encoder.take().map(|e| e.finish()) {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => {
                self.error.get_or_insert(format!("finishing the video: {e}"));
                None
            }
            None => None,
        };
        if end.is_none() {
            self.error.get_or_insert("no end-of-video marker before the idle timeout: video may be incomplete".into());
        }
        let expected = end.map(|h| h.frame_index);
        if let Some(expected) = expected {
            self.missing += expected.saturating_sub(self.next_index);
        }
        let end_produced_at_ms = end.map(|h| h.produced_at_ms).unwrap_or_else(now_ms);
        let fps = self.first.fps();
        let completion = VideoCompletion {
            video_id: self.first.video_id.clone(),
            frames: self.frames,
            expected_frames: expected,
            missing_frames: self.missing,
            duplicate_frames: self.duplicates,
            fire_frames: self.fire_frames,
            max_score: self.max_score,
            width: self.first.width,
            height: self.first.height,
            fps,
            duration_s: self.frames as f64 / fps,
            key: video_key(&self.first.video_id),
            location: None,
            bytes: file.as_ref().map(|f| f.bytes).unwrap_or(0),
            end_to_encoded_ms: now_ms().saturating_sub(end_produced_at_ms),
            end_to_stored_ms: None,
            error: self.error,
        };
        (self.hold, FinishedVideo { completion, file, end_produced_at_ms })
    }
}

/// See the module docs. Input must hold each video's records in order on one worker (exchange
/// by video id first).
pub fn assemble_videos<'s, F: EncoderFactory>(
    frames: Stream<'s, EventTime, Vec<InferredFrame>>,
    mut factory: F,
    config: AssemblyConfig,
) -> Stream<'s, EventTime, Vec<FinishedVideo>> {
    let scope = frames.scope();
    frames.unary_frontier(Pipeline, "AssembleVideos", move |initial, info| {
        let activator = scope.activator_for(info.address);
        drop(initial);
        let mut videos: HashMap<String, InFlight> = HashMap::new();
        let mut finished: Vec<(Capability<EventTime>, FinishedVideo)> = Vec::new();
        move |(input, _frontier), output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else {
                    tracing::error!(records = data.len(), "video records sent with no timestamp; dropped");
                    data.clear();
                    return;
                };
                for (record, verdict) in data.drain(..) {
                    match &*record {
                        VideoRecord::Frame { header, image } => {
                            let video = videos.entry(header.video_id.clone()).or_insert_with(|| {
                                let (encoder, error) = match factory.start(header) {
                                    Ok(encoder) => (Some(encoder), None),
                                    Err(e) => (None, Some(format!("opening the encoder: {e}"))),
                                };
                                InFlight {
                                    hold: cap.clone(),
                                    first: header.clone(),
                                    encoder,
                                    error,
                                    next_index: header.frame_index,
                                    frames: 0,
                                    missing: 0,
                                    duplicates: 0,
                                    fire_frames: 0,
                                    max_score: 0.0,
                                    last_frame: Instant::now(),
                                }
                            });
                            video.frame(header, image, verdict.as_ref(), &config);
                        }
                        VideoRecord::End { header } => match videos.remove(&header.video_id) {
                            Some(video) => finished.push(video.finish(Some(header))),
                            None => {
                                tracing::warn!(video = %header.video_id, "end-of-video marker for a video with no frames here (already completed, or empty)");
                            }
                        },
                    }
                }
            });
            let stale: Vec<String> = videos.iter().filter(|(_, v)| v.last_frame.elapsed() >= config.idle_timeout).map(|(id, _)| id.clone()).collect();
            for id in stale {
                let video = videos.remove(&id).expect("listed");
                tracing::warn!(video = %id, frames = video.frames, "video idle past the timeout; finishing it without an end marker");
                finished.push(video.finish(None));
            }
            for (cap, video) in finished.drain(..) {
                output.session(&cap).give(video);
            }
            if let Some(oldest) = videos.values().map(|v| v.last_frame).min() {
                activator.activate_after(config.idle_timeout.saturating_sub(oldest.elapsed()));
            }
        }
    })
}
