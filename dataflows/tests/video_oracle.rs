//! The video dataflow at 1, 2 and 4 workers with a stand-in model (score = the frame's red
//! level) and a stand-in encoder (records what it is given): every video's frames reach its one
//! encoder in order, overlayed only where the model saw fire; each video completes once, with
//! duplicates and gaps counted; detections are one per frame.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pitwall_dataflows::infer::{BatchModel, Batching};
use pitwall_dataflows::video::assemble::{AssemblyConfig, EncodeError, EncodedVideo, EncoderFactory, FinishedVideo, VideoEncoder};
use pitwall_dataflows::video::detect::{FireDetection, FireVerdict};
use pitwall_dataflows::video::frame::{FrameHeader, RgbImage, VideoRecord};
use pitwall_dataflows::video::overlay::Heatmap;
use pitwall_dataflows::video::pipeline::{video_dataflow, VideoConfig};
use timely::dataflow::operators::capture::Event;
use timely::dataflow::operators::{Capture, Input, Probe};

/// Fire when the frame's first pixel is red; the heatmap covers the left column only. A batch
/// holding a frame of `fails_on` fails whole, as an ONNX run does.
struct RedModel {
    fails_on: Option<&'static str>,
}

impl BatchModel for RedModel {
    type Item = Rc<VideoRecord>;
    type Output = FireVerdict;
    fn wants(&self, item: &Rc<VideoRecord>) -> bool {
        matches!(**item, VideoRecord::Frame { .. })
    }
    fn run(&mut self, batch: &[Rc<VideoRecord>]) -> Result<Vec<FireVerdict>, String> {
        if let Some(video) = self.fails_on.filter(|v| batch.iter().any(|r| r.header().video_id == *v)) {
            return Err(format!("invalid dimensions for {video}"));
        }
        Ok(batch
            .iter()
            .map(|r| {
                let VideoRecord::Frame { image, .. } = &**r else { unreachable!("wants() filters") };
                let score = f32::from(image.pixels[0]) / 255.0;
                FireVerdict {
                    score,
                    heatmap: Some(Heatmap { width: 2, height: 1, values: vec![score, 0.0] }),
                    regions: Vec::new(),
                    inference_ms: 0.0,
                }
            })
            .collect())
    }
}

/// Per video: (encoder opened on worker, frames pushed as (index, overlayed)). The index is
/// the right column's green level (never overlayed); overlayed: the left column was changed.
type Encoded = Arc<Mutex<EncodedByVideo>>;

/// Per video: (worker, frames pushed as (index, overlayed)).
type EncodedByVideo = BTreeMap<String, (usize, Vec<(u8, bool)>)>;

struct Recorder {
    worker: usize,
    encoded: Encoded,
}

struct Recording {
    video: String,
    encoded: Encoded,
}

impl VideoEncoder for Recording {
    fn push(&mut self, frame: &RgbImage) -> Result<(), EncodeError> {
        let (left, right) = (frame.pixel(0, 0), frame.pixel(1, 0));
        self.encoded.lock().unwrap().get_mut(&self.video).expect("started").1.push((right[1], left != right));
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<EncodedVideo, EncodeError> {
        Ok(EncodedVideo { path: format!("/spool/{}.mp4", self.video).into(), bytes: 1 })
    }
}

impl EncoderFactory for Recorder {
    fn start(&mut self, first: &FrameHeader) -> Result<Box<dyn VideoEncoder>, EncodeError> {
        let previous = self.encoded.lock().unwrap().insert(first.video_id.clone(), (self.worker, Vec::new()));
        assert!(previous.is_none(), "video {} started twice", first.video_id);
        Ok(Box::new(Recording { video: first.video_id.clone(), encoded: self.encoded.clone() }))
    }
}

fn header(video: &str, index: u64) -> FrameHeader {
    FrameHeader {
        video_id: video.into(),
        frame_index: index,
        pts_ms: index as i64 * 40,
        produced_at_ms: 1_000 + index,
        width: 2,
        height: 2,
        fps_num: 25,
        fps_den: 1,
        total_frames: None,
    }
}

/// Frame `index` of a video: green level = index, red = 255 on "fire" frames (10..20).
fn frame(video: &str, index: u64) -> VideoRecord {
    let red = if (10..20).contains(&index) { 255 } else { 0 };
    let image = RgbImage { width: 2, height: 2, pixels: [red, index as u8, 0].repeat(4) };
    VideoRecord::Frame { header: header(video, index), image }
}

/// The records of six videos of 30 frames; `cam-3` repeats frame 5 and loses frame 7.
fn records() -> Vec<VideoRecord> {
    let mut out = Vec::new();
    for v in 0..6 {
        let id = format!("cam-{v}");
        for i in 0..30 {
            if v == 3 && i == 7 {
                continue;
            }
            out.push(frame(&id, i));
            if v == 3 && i == 5 {
                out.push(frame(&id, i));
            }
        }
        out.push(VideoRecord::End { header: FrameHeader { frame_index: 30, ..header(&id, 30) } });
    }
    out
}

fn run(workers: usize, fails_on: Option<&'static str>) -> (Vec<FireDetection>, Vec<FinishedVideo>, EncodedByVideo) {
    let encoded: Encoded = Arc::default();
    let shared = encoded.clone();
    let (det_tx, det_rx) = std::sync::mpsc::channel();
    let (fin_tx, fin_rx) = std::sync::mpsc::channel();
    let (det_tx, fin_tx) = (Mutex::new(det_tx), Mutex::new(fin_tx));
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let recorder = Recorder { worker: index, encoded: shared.clone() };
        let config =
            VideoConfig { batching: Batching { max_batch: 4, ..Batching::default() }, assembly: AssemblyConfig::default(), model_name: "red".into() };
        let (det_tx, fin_tx) = (det_tx.lock().unwrap().clone(), fin_tx.lock().unwrap().clone());
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, records) = scope.new_input::<Vec<VideoRecord>>();
            let outputs = video_dataflow(records, RedModel { fails_on }, recorder, &config);
            outputs.detections.capture_into(det_tx);
            let probe = outputs.finished.clone().probe().0;
            outputs.finished.capture_into(fin_tx);
            (input, probe)
        });
        // Each video enters at one worker, in order, as from its Kafka partition.
        for (i, record) in records().into_iter().enumerate() {
            let video: usize = record.header().video_id[4..].parse().unwrap();
            if video % worker.peers() == index {
                input.send(record);
            }
            if i % 16 == 0 {
                input.advance_to(i as u64);
                worker.step();
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let encoded = encoded.lock().unwrap().clone();
    (messages(det_rx), messages(fin_rx), encoded)
}

/// Every record a captured stream carried (extract() would need `Ord`).
fn messages<D>(rx: std::sync::mpsc::Receiver<Event<u64, Vec<D>>>) -> Vec<D> {
    rx.try_iter()
        .flat_map(|event| match event {
            Event::Messages(_, data) => data,
            Event::Progress(_) => Vec::new(),
        })
        .collect()
}

#[test]
fn every_video_is_assembled_once_in_order_at_any_worker_count() {
    for workers in [1, 2, 4] {
        let (detections, finished, encoded) = run(workers, None);
        // One detection per received frame (the duplicate too: it is a frame the model saw).
        assert_eq!(detections.len(), 6 * 30, "{workers} workers");
        let fire: Vec<&FireDetection> = detections.iter().filter(|d| d.fire == Some(true)).collect();
        assert!(fire.iter().all(|d| (10..20).contains(&d.frame_index)) && fire.len() == 6 * 10, "{workers} workers");
        assert_eq!(finished.len(), 6, "{workers} workers: one completion per video");
        for video in &finished {
            let c = &video.completion;
            let (_, frames) = &encoded[&c.video_id];
            let expected: Vec<u8> = (0..30).filter(|i| !(c.video_id == "cam-3" && *i == 7)).map(|i| i as u8).collect();
            // In order, each frame once, overlayed (red pushed to the top) exactly on fire frames.
            assert_eq!(frames.iter().map(|(i, _)| *i).collect::<Vec<_>>(), expected, "{workers} workers, {}", c.video_id);
            assert!(frames.iter().all(|(i, overlayed)| *overlayed == (10..20).contains(i)), "{workers} workers, {}: {frames:?}", c.video_id);
            assert_eq!(c.frames, expected.len() as u64);
            assert_eq!(c.fire_frames, 10);
            assert_eq!(c.expected_frames, Some(30));
            let (missing, duplicates) = if c.video_id == "cam-3" { (1, 1) } else { (0, 0) };
            assert_eq!((c.missing_frames, c.duplicate_frames), (missing, duplicates), "{}", c.video_id);
            assert_eq!(c.key, format!("videos/{}_with_heatmaps.mp4", c.video_id));
            assert!(c.error.is_none());
        }
        // With several workers the videos spread over them.
        let used: std::collections::BTreeSet<usize> = encoded.values().map(|(w, _)| *w).collect();
        assert!(workers == 1 || used.len() > 1, "{workers} workers used {used:?}");
    }
}

/// A failed model run is no verdict: its frames are published with no score (not 0, not "no
/// fire") and the reason, and their videos are announced with the reason and not stored, while
/// the videos of the batches that ran are untouched.
#[test]
fn frames_the_model_failed_on_have_no_score_and_their_videos_are_not_done() {
    for workers in [1, 2, 4] {
        let (detections, finished, _) = run(workers, Some("cam-5"));
        assert_eq!(detections.len(), 6 * 30, "{workers} workers: every frame is reported");
        let mut unscored: BTreeMap<&str, u64> = BTreeMap::new();
        for d in &detections {
            match &d.error {
                Some(reason) => {
                    assert_eq!((d.score, d.fire), (None, None), "{workers} workers: {d:?}");
                    assert!(d.regions.is_empty() && reason.contains("invalid dimensions for cam-5"), "{d:?}");
                    *unscored.entry(d.video_id.as_str()).or_default() += 1;
                }
                None => assert_eq!(d.fire, Some((10..20).contains(&d.frame_index)), "{workers} workers: {d:?}"),
            }
        }
        assert_eq!(unscored.get("cam-5"), Some(&30), "{workers} workers: every batch with cam-5 failed");
        assert_eq!(finished.len(), 6, "{workers} workers");
        for video in &finished {
            let c = &video.completion;
            let failed = unscored.get(c.video_id.as_str()).copied().unwrap_or(0);
            assert_eq!(c.unscored_frames, failed, "{workers} workers, {}", c.video_id);
            match &c.error {
                Some(error) => {
                    assert!(failed > 0 && error.contains(&format!("no verdict for {failed} of its frames")), "{workers} workers: {error}")
                }
                None => assert_eq!((failed, c.fire_frames), (0, 10), "{workers} workers, {}", c.video_id),
            }
        }
        assert!(finished.iter().any(|v| v.completion.error.is_none()), "{workers} workers: the other videos are done");
    }
}
