//! The video dataflow, in memory, on 2 timely workers: two generated street scenes (one with
//! flames, one without) go through a stand-in fire model (the share of strongly red-orange
//! pixels, as a heatmap) and a stand-in encoder that counts what it is given; prints each
//! video's completion and checks that fire was found only in the burning clip.
//!
//! `cargo run --example video_pipeline`

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pitwall_dataflows::infer::{BatchModel, Batching};
use pitwall_dataflows::sim::video::{Scene, SceneConfig};
use pitwall_dataflows::video::assemble::{AssemblyConfig, EncodeError, EncodedVideo, EncoderFactory, FinishedVideo, VideoEncoder};
use pitwall_dataflows::video::detect::FireVerdict;
use pitwall_dataflows::video::frame::{FrameHeader, RgbImage, VideoRecord};
use pitwall_dataflows::video::overlay::Heatmap;
use pitwall_dataflows::video::pipeline::{video_dataflow, VideoConfig};
use timely::dataflow::operators::{Input, Inspect, Probe};

/// Scores a frame by its share of flame-coloured pixels; the heatmap is an 8x8 grid of it.
struct FlameColour;

impl BatchModel for FlameColour {
    type Item = Rc<VideoRecord>;
    type Output = FireVerdict;
    /// Frames only: end-of-video markers pass the model by.
    fn wants(&self, item: &Rc<VideoRecord>) -> bool {
        !matches!(**item, VideoRecord::End { .. })
    }
    fn run(&mut self, batch: &[Rc<VideoRecord>]) -> Result<Vec<FireVerdict>, String> {
        Ok(batch
            .iter()
            .filter_map(|r| match &**r {
                VideoRecord::Frame { image, .. } => Some(verdict(image)),
                VideoRecord::End { .. } => None,
            })
            .collect())
    }
}

fn verdict(image: &RgbImage) -> FireVerdict {
    const GRID: u32 = 8;
    let mut cells = vec![0.0_f32; (GRID * GRID) as usize];
    for y in 0..image.height {
        for x in 0..image.width {
            let [r, g, b] = image.pixel(x, y);
            if r > 200 && g > 60 && g < 200 && b < 80 {
                cells[((y * GRID / image.height) * GRID + x * GRID / image.width) as usize] += 1.0;
            }
        }
    }
    let per_cell = (image.width * image.height / (GRID * GRID)).max(1) as f32;
    let values: Vec<f32> = cells.iter().map(|c| (c / per_cell * 4.0).min(1.0)).collect();
    let score = values.iter().copied().fold(0.0, f32::max);
    FireVerdict { score, heatmap: Some(Heatmap { width: GRID, height: GRID, values }), regions: Vec::new(), inference_ms: 0.0 }
}

/// Counts the frames each video's encoder was given.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<Vec<(String, u64)>>>);

struct CountingEncoder {
    video: String,
    frames: u64,
    counts: Counting,
}

impl VideoEncoder for CountingEncoder {
    fn push(&mut self, _frame: &RgbImage) -> Result<(), EncodeError> {
        self.frames += 1;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<EncodedVideo, EncodeError> {
        self.counts.0.lock().expect("counts").push((self.video.clone(), self.frames));
        Ok(EncodedVideo { path: format!("{}.mp4", self.video).into(), bytes: self.frames })
    }
}

impl EncoderFactory for Counting {
    fn start(&mut self, first: &FrameHeader) -> Result<Box<dyn VideoEncoder>, EncodeError> {
        Ok(Box::new(CountingEncoder { video: first.video_id.clone(), frames: 0, counts: self.clone() }))
    }
}

/// A clip as `video-frames` records: its frames, then the end marker.
fn clip(video_id: &str, fire: bool) -> Vec<VideoRecord> {
    let config = SceneConfig { width: 96, height: 54, frames: 50, fire, ..SceneConfig::default() };
    let scene = Scene::new(config.clone());
    let header = |frame_index| FrameHeader {
        video_id: video_id.into(),
        frame_index,
        pts_ms: frame_index as i64 * 40,
        produced_at_ms: 1_000 + frame_index,
        width: config.width,
        height: config.height,
        fps_num: config.fps,
        fps_den: 1,
        total_frames: Some(config.frames),
    };
    let mut records: Vec<VideoRecord> = (0..config.frames).map(|i| VideoRecord::Frame { header: header(i), image: scene.frame(i) }).collect();
    records.push(VideoRecord::End { header: header(config.frames) });
    records
}

fn main() {
    let counts = Counting::default();
    let finished: Arc<Mutex<Vec<FinishedVideo>>> = Arc::default();
    let (shared_counts, shared_finished) = (counts.clone(), finished.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let config = VideoConfig {
            batching: Batching { max_batch: 8, ..Batching::default() },
            assembly: AssemblyConfig::default(),
            model_name: "flame-colour".into(),
        };
        let finished = shared_finished.clone();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, records) = scope.new_input::<Vec<VideoRecord>>();
            let outputs = video_dataflow(records, FlameColour, shared_counts.clone(), &config);
            let done = outputs.finished.inspect(move |v: &FinishedVideo| finished.lock().expect("finished").push(v.clone()));
            (input, done.probe().0)
        });
        // Each video enters at one worker, in order, as from its Kafka partition.
        let (id, fire) = if worker.index() == 0 { ("street-fire", true) } else { ("street-calm", false) };
        for record in clip(id, fire) {
            input.send(record);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .expect("timely runs");
    let finished = finished.lock().expect("finished");
    for video in finished.iter() {
        let c = &video.completion;
        println!("{}: {} frames ({} with fire, max score {:.2}) -> {}", c.video_id, c.frames, c.fire_frames, c.max_score, c.key);
    }
    let fire_frames = |id: &str| finished.iter().find(|v| v.completion.video_id == id).map(|v| v.completion.fire_frames);
    assert_eq!(finished.len(), 2, "one completion per video");
    assert!(fire_frames("street-fire").is_some_and(|n| n > 0), "fire found in the burning clip");
    assert_eq!(fire_frames("street-calm"), Some(0), "no fire in the calm clip (its red car is not fire)");
    assert!(counts.0.lock().expect("counts").iter().all(|(_, frames)| *frames == 50), "every frame reached its encoder");
}
