//! Per-video assembly: each worker keeps the state of the videos routed to it, overlays every
//! frame's heatmap and streams it to that video's encoder (no video is held as raw frames), and
//! on the end-of-video marker finishes the file and emits a [`FinishedVideo`].
//!
//! The operator holds a capability at each in-flight video's first frame's event time (its
//! production time, a function of the data alone), so the source does not commit past a video
//! until its completion is out, and a restart compares that same time with its partition's
//! delivered-before mark (`restart.rs`): a video in flight at a crash is read again whole and
//! stored, one stored before it is not stored again.
//!
//! When the input ends (SIGTERM, or `--exit-at-end` before a video's end marker) the videos in
//! flight are neither finished nor released: their holds keep their frames uncommitted, so the
//! next run reads them again whole ([`AssemblyState`] tells the job they are there). A video
//! whose frames stop for the idle timeout (a camera pausing) is finished and stored as
//! incomplete; frames of it arriving later are a *tail*, stored under its own key
//! ([`tail_key`]), never over the head.

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
    /// Why the video was not stored, if it was not.
    pub error: Option<String>,
    /// The index of the first frame received: 0 unless this is a tail (see [`tail_key`]).
    #[serde(default)]
    pub first_frame: u64,
    /// Why the stored video may be incomplete (finished by the idle timeout without its end
    /// marker, or a tail), if it may be.
    #[serde(default)]
    pub incomplete: Option<String>,
    /// A presigned GET link to the stored video, valid for `--s3-presign-secs` (set by the
    /// uploader when asked, S3 only).
    #[serde(default)]
    pub presigned_url: Option<String>,
    /// Frames the fire model gave no verdict for (its run failed): a video with any is
    /// announced with `error` and not stored.
    #[serde(default)]
    pub unscored_frames: u64,
}

/// The object key of a video's overlayed file.
pub fn video_key(video_id: &str) -> String {
    format!("videos/{video_id}_with_heatmaps.mp4")
}

/// The object key of a video's *tail*: frames from `first_frame` on that arrived after its head
/// had been finished (by the idle timeout), stored beside the head instead of over it.
pub fn tail_key(video_id: &str, first_frame: u64) -> String {
    format!("videos/{video_id}_from_frame_{first_frame}_with_heatmaps.mp4")
}

/// What one worker's assembly holds, for the job deciding when a stopping dataflow is settled.
#[derive(Clone, Debug, Default)]
pub struct AssemblyState {
    /// The input has ended (every source upstream finished): no frame will come in this run.
    pub exhausted: Rc<std::cell::Cell<bool>>,
    /// Videos in flight: after the input ended, those left unfinished (their frames uncommitted).
    pub unfinished: Rc<std::cell::Cell<usize>>,
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
    /// Frames the model gave no verdict for, and the first reason.
    unscored: u64,
    unscored_reason: Option<String>,
    last_frame: Instant,
}

impl InFlight {
    fn frame(&mut self, header: &FrameHeader, image: &RgbImage, verdict: Option<&Result<FireVerdict, String>>, config: &AssemblyConfig) {
        if header.frame_index < self.next_index {
            self.duplicates += 1;
            return;
        }
        self.missing = self.missing.saturating_add(header.frame_index - self.next_index);
        self.next_index = header.frame_index + 1;
        self.last_frame = Instant::now();
        if image.width != self.first.width || image.height != self.first.height {
            self.missing += 1;
            tracing::warn!(video = %header.video_id, frame = header.frame_index, "frame size changed mid-video; frame skipped");
            return;
        }
        let mut overlayed = image.clone();
        if let Some(Err(reason)) = verdict {
            self.unscored += 1;
            self.unscored_reason.get_or_insert_with(|| reason.clone());
        }
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
        let first_frame = self.first.frame_index;
        let file = match self.encoder.take().map(|e| e.finish()) {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => {
                self.error.get_or_insert(format!("finishing the video: {e}"));
                None
            }
            None => None,
        };
        let mut incomplete = Vec::new();
        if first_frame > 0 {
            incomplete.push(format!("a tail from frame {first_frame}: the frames before it were finished earlier (idle timeout) or never received"));
        }
        if end.is_none() {
            incomplete.push("no end-of-video marker before the idle timeout".to_string());
        }
        // The end marker's index is the frame count; without it, the producer's announced total.
        let expected = end.map(|h| h.frame_index).or(self.first.total_frames);
        if let Some(expected) = expected {
            self.missing = self.missing.saturating_add(expected.saturating_sub(self.next_index));
        }
        // A video the model did not score whole is not done: its overlay would say "no fire"
        // where nothing was looked at. Announced with the reason, not stored.
        if let Some(reason) = &self.unscored_reason {
            self.error.get_or_insert(format!("the fire model gave no verdict for {} of its frames: {reason}", self.unscored));
        }
        let expected = end.map(|h| h.frame_index);
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
            key: if first_frame == 0 { video_key(&self.first.video_id) } else { tail_key(&self.first.video_id, first_frame) },
            location: None,
            bytes: file.as_ref().map(|f| f.bytes).unwrap_or(0),
            end_to_encoded_ms: now_ms().saturating_sub(end_produced_at_ms),
            end_to_stored_ms: None,
            error: self.error,
            presigned_url: None,
            first_frame,
            incomplete: (!incomplete.is_empty()).then(|| incomplete.join("; ")),
            unscored_frames: self.unscored,
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
) -> (Stream<'s, EventTime, Vec<FinishedVideo>>, AssemblyState) {
    let scope = frames.scope();
    let state = AssemblyState::default();
    let shared = state.clone();
    let stream = frames.unary_frontier(Pipeline, "AssembleVideos", move |initial, info| {
        let activator = scope.activator_for(info.address);
        drop(initial);
        let mut videos: HashMap<String, InFlight> = HashMap::new();
        let mut finished: Vec<(Capability<EventTime>, FinishedVideo)> = Vec::new();
        move |(input, frontier), output| {
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
                                // At the first frame's event time (never before the batch's
                                // time, which a record not late is never behind): see the module docs.
                                InFlight {
                                    hold: cap.delayed(&header.produced_at_ms.max(*cap.time())),
                                    first: header.clone(),
                                    encoder,
                                    error,
                                    next_index: header.frame_index,
                                    frames: 0,
                                    missing: 0,
                                    duplicates: 0,
                                    fire_frames: 0,
                                    max_score: 0.0,
                                    unscored: 0,
                                    unscored_reason: None,
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
            // The input ended: no frame will come in this run. What is in flight stays held,
            // unfinished (the next run reads it again whole); nothing is finished for idleness.
            if frontier.frontier().is_empty() {
                if !shared.exhausted.get() && !videos.is_empty() {
                    let ids: Vec<&String> = videos.keys().collect();
                    tracing::warn!(videos = ?ids, "the input ended with videos unfinished: they are not stored, their frames stay uncommitted and the next run reads them again whole");
                }
                shared.exhausted.set(true);
                shared.unfinished.set(videos.len());
                for (cap, video) in finished.drain(..) {
                    output.session(&cap).give(video);
                }
                return;
            }
            let stale: Vec<String> = videos.iter().filter(|(_, v)| v.last_frame.elapsed() >= config.idle_timeout).map(|(id, _)| id.clone()).collect();
            for id in stale {
                let video = videos.remove(&id).expect("listed");
                tracing::warn!(video = %id, frames = video.frames, "video idle past the timeout; finishing it without an end marker");
                finished.push(video.finish(None));
            }
            for (cap, video) in finished.drain(..) {
                output.session(&cap).give(video);
            }
            shared.unfinished.set(videos.len());
            if let Some(oldest) = videos.values().map(|v| v.last_frame).min() {
                activator.activate_after(config.idle_timeout.saturating_sub(oldest.elapsed()));
            }
        }
    });
    (stream, state)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Input, Probe};

    use super::*;

    struct Counting(u64);

    impl VideoEncoder for Counting {
        fn push(&mut self, _frame: &RgbImage) -> Result<(), EncodeError> {
            self.0 += 1;
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<EncodedVideo, EncodeError> {
            Ok(EncodedVideo { path: "/spool/x.mp4".into(), bytes: self.0 })
        }
    }

    struct Factory;

    impl EncoderFactory for Factory {
        fn start(&mut self, _first: &FrameHeader) -> Result<Box<dyn VideoEncoder>, EncodeError> {
            Ok(Box::new(Counting(0)))
        }
    }

    fn header(index: u64, total: Option<u64>) -> FrameHeader {
        FrameHeader {
            video_id: "cam".into(),
            frame_index: index,
            pts_ms: index as i64 * 40,
            produced_at_ms: 50_000 + index * 40,
            width: 2,
            height: 2,
            fps_num: 25,
            fps_den: 1,
            total_frames: total,
        }
    }

    fn frame(index: u64, total: Option<u64>) -> InferredFrame {
        (Rc::new(VideoRecord::Frame { header: header(index, total), image: RgbImage::new(2, 2) }), None)
    }

    fn end(count: u64) -> InferredFrame {
        (Rc::new(VideoRecord::End { header: header(count, None) }), None)
    }

    /// Feeds `steps` (each: records to send, then how long to wait stepping) at input time 0,
    /// closes the input unless `keep_open`, and steps until done or 1 s passed. Returns the
    /// finished videos with their times, the assembly's state and the probe's frontier.
    /// One step: the records to send, as (frame index, total frames; `Some(u64::MAX)`: the end
    /// marker), then how long to step the worker.
    type Step = (Vec<(u64, Option<u64>)>, Duration);

    /// What a run saw: finished videos with their times, the assembly's (exhausted, unfinished),
    /// and the probe's frontier at the end.
    type Outcome = (Vec<(u64, FinishedVideo)>, (bool, usize), Vec<u64>);

    fn run(steps: Vec<Step>, idle: Duration) -> Outcome {
        timely::execute_directly(move |worker| {
            let state = Rc::new(RefCell::new(None));
            let held = state.clone();
            let config = AssemblyConfig { idle_timeout: idle, ..AssemblyConfig::default() };
            let dataflow = worker.next_dataflow_index();
            let (mut input, probe, captured) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<InferredFrame>>();
                let (finished, assembly) = assemble_videos(stream, Factory, config);
                *held.borrow_mut() = Some(assembly);
                (input, finished.clone().probe().0, finished.capture())
            });
            for (records, wait) in steps {
                for (index, total) in records {
                    input.send(if total == Some(u64::MAX) { end(index) } else { frame(index, total) });
                }
                input.flush();
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    worker.step();
                }
            }
            input.close();
            let until = Instant::now() + Duration::from_secs(1);
            while !probe.done() && Instant::now() < until {
                worker.step();
            }
            let frontier = probe.with_frontier(|f| f.to_vec());
            let finished: Vec<(u64, FinishedVideo)> = captured
                .try_iter()
                .flat_map(|event| match event {
                    Event::Messages(time, data) => data.into_iter().map(|v| (*time.expect_singleton(), v)).collect(),
                    Event::Progress(_) => Vec::new(),
                })
                .collect();
            // Held work never completes: dropped, as the job drops it (timely would otherwise
            // step it forever).
            worker.drop_dataflow(dataflow);
            let state: AssemblyState = state.borrow_mut().take().expect("built");
            (finished, (state.exhausted.get(), state.unfinished.get()), frontier)
        })
    }

    #[test]
    fn a_finished_video_is_timed_by_its_first_frames_event_time_not_the_batch() {
        // Sent at input time 0 (a restarted source's first batch); produced at 50,000 ms.
        let (finished, state, frontier) =
            run(vec![((0..3).map(|i| (i, None)).chain([(3, Some(u64::MAX))]).collect(), Duration::ZERO)], Duration::from_secs(60));
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].0, 50_000, "the time a restart compares with its partition's mark");
        let c = &finished[0].1.completion;
        assert_eq!((c.frames, c.missing_frames, c.first_frame, c.error.as_deref(), c.incomplete.as_deref()), (3, 0, 0, None, None));
        assert_eq!(c.key, "videos/cam_with_heatmaps.mp4");
        assert!(frontier.is_empty());
        assert_eq!(state, (true, 0));
    }

    #[test]
    fn a_video_in_flight_when_the_input_ends_is_held_not_finished() {
        let (finished, state, frontier) = run(vec![((0..5).map(|i| (i, None)).collect(), Duration::ZERO)], Duration::from_millis(50));
        assert!(finished.is_empty(), "an unfinished video is neither stored nor announced: {finished:?}");
        assert_eq!(state, (true, 1), "the input ended with one video held");
        // Its frames stay uncommitted: the probe never passes its first frame's time, even
        // after the idle timeout (50 ms) went by many times.
        assert_eq!(frontier, vec![50_000]);
    }

    #[test]
    fn an_idle_video_is_stored_as_incomplete_and_its_tail_never_over_it() {
        let (finished, _, _) = run(
            vec![
                ((0..4).map(|i| (i, Some(10))).collect(), Duration::from_millis(300)),
                ((4..10).map(|i| (i, Some(10))).chain([(10, Some(u64::MAX))]).collect(), Duration::ZERO),
            ],
            Duration::from_millis(100),
        );
        assert_eq!(finished.len(), 2, "{finished:?}");
        let (head, tail) = (&finished[0].1.completion, &finished[1].1.completion);
        assert_eq!((head.frames, head.missing_frames, head.first_frame, head.error.as_deref()), (4, 6, 0, None), "missing counted from the total");
        assert!(head.incomplete.as_deref().unwrap().contains("idle timeout"), "{head:?}");
        assert_eq!(head.key, "videos/cam_with_heatmaps.mp4");
        assert!(finished[0].1.file.is_some(), "stored: it has its file");
        assert_eq!((tail.frames, tail.missing_frames, tail.first_frame, tail.error.as_deref()), (6, 0, 4, None));
        assert_eq!(tail.key, "videos/cam_from_frame_4_with_heatmaps.mp4", "a tail never overwrites the head");
        assert!(tail.incomplete.as_deref().unwrap().contains("a tail from frame 4"), "{tail:?}");
        assert_eq!(finished[1].0, 50_000 + 4 * 40);
    }
}
