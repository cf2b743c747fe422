//! The fire model of the video pipeline, as a [`BatchModel`] over frames: frames in, the model
//! run, its outputs read by `dataflows/src/video/outputs.rs` (`FireOutputs`): either a heatmap
//! model (pitwall's default `models/fire_colour.onnx`: outputs `heatmap [N,1,H,W]` and
//! `score [N,1]`) or a YOLO-style detector (one output `[N, 4 + C, K]`, NMS in Rust).

use std::rc::Rc;
use std::time::Instant;

use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::video::detect::{to_chw, FireVerdict, YoloDecode};
use pitwall_dataflows::video::frame::{FrameHeader, RgbImage, VideoRecord};
use pitwall_dataflows::video::outputs::{FireOutputs, ModelOutput, OutputReading};

use super::{ModelSource, OnnxError, OnnxModel};

/// How frames are fed and verdicts drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct FireOptions {
    /// Which output convention the model follows.
    pub kind: FireOutputs,
    /// Model input size (frames are resized to it); a model with a fixed input size overrides it.
    pub width: u32,
    pub height: u32,
    pub intra_threads: usize,
    /// Heatmap cells at or above this form hot regions.
    pub region_threshold: f32,
    pub max_regions: usize,
    pub yolo: YoloDecode,
}

impl Default for FireOptions {
    fn default() -> Self {
        FireOptions {
            kind: FireOutputs::Heatmap,
            width: 128,
            height: 128,
            intra_threads: 1,
            region_threshold: 0.5,
            max_regions: 8,
            yolo: YoloDecode::default(),
        }
    }
}

/// A loaded fire model; one per worker.
#[derive(Debug)]
pub struct FireDetector {
    model: OnnxModel,
    options: FireOptions,
    /// The batch size the model's input fixes (an export's static `[1, 3, H, W]`, say): frames
    /// are fed that many at a time, the last run padded. `None`: any batch size.
    fixed_batch: Option<usize>,
    scratch: Vec<f32>,
}

impl FireDetector {
    /// Loads and checks the model: a missing file, a wrong input, missing outputs, or a model
    /// that cannot run a test batch (black frames, as many as its batch dimension fixes, else
    /// one) are start-up errors, not per-frame ones.
    pub fn load(source: &ModelSource, mut options: FireOptions) -> Result<FireDetector, OnnxError> {
        let model = OnnxModel::load(source, options.intra_threads)?;
        let fail = |reason: String| OnnxError::Model { path: source.describe(), reason };
        if model.input_shape.len() != 4 || model.input_shape[1] != 3 {
            return Err(fail(format!("input `{}` must be [N, 3, H, W], is {:?}", model.input, model.input_shape)));
        }
        if model.input_shape[2] > 0 && model.input_shape[3] > 0 {
            options.height = model.input_shape[2] as u32;
            options.width = model.input_shape[3] as u32;
        }
        options.kind.check(&model.outputs).map_err(fail)?;
        let fixed_batch = usize::try_from(model.input_shape[0]).ok().filter(|n| *n > 0);
        if let Some(batch) = fixed_batch {
            tracing::info!(model = %model.name, batch, "the fire model's batch size is fixed: frames are run {batch} at a time");
        }
        let mut detector = FireDetector { model, options, fixed_batch, scratch: Vec::new() };
        let (w, h) = (detector.options.width, detector.options.height);
        let black = VideoRecord::Frame {
            header: FrameHeader {
                video_id: "start-up check".into(),
                frame_index: 0,
                pts_ms: 0,
                produced_at_ms: 0,
                width: w,
                height: h,
                fps_num: 25,
                fps_den: 1,
                total_frames: None,
            },
            image: RgbImage { width: w, height: h, pixels: vec![0; 3 * w as usize * h as usize] },
        };
        let test = vec![&black; fixed_batch.unwrap_or(1)];
        match detector.detect(&test) {
            Ok(verdicts) if verdicts.len() == test.len() => Ok(detector),
            Ok(verdicts) => Err(fail(format!("a test batch of {} frames gave {} verdicts", test.len(), verdicts.len()))),
            Err(e) => Err(fail(format!("cannot run a test batch of {} black {w}x{h} frames: {e}", test.len()))),
        }
    }

    pub fn name(&self) -> &str {
        &self.model.name
    }

    /// The frame size the model is fed, WIDTHxHEIGHT (the model's own when it fixes one).
    pub fn input_size(&self) -> (u32, u32) {
        (self.options.width, self.options.height)
    }

    /// The batch size the model fixes, if it fixes one.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// Runs the model on frames (all must be `VideoRecord::Frame`): in one run, or in runs of
    /// the model's fixed batch size.
    pub fn detect(&mut self, frames: &[&VideoRecord]) -> Result<Vec<FireVerdict>, OnnxError> {
        let (w, h) = (self.options.width, self.options.height);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut headers = Vec::with_capacity(frames.len());
        for record in frames {
            let VideoRecord::Frame { header, image } = record else {
                self.scratch = scratch;
                return Err(OnnxError::Run { model: self.model.name.clone(), reason: "end-of-video markers cannot be run through the model".into() });
            };
            to_chw(image, w, h, &mut scratch);
            headers.push(header);
        }
        let plane = 3 * w as usize * h as usize;
        let chunk = self.fixed_batch.unwrap_or(headers.len()).max(1);
        let mut verdicts = Vec::with_capacity(headers.len());
        let mut outcome = Ok(());
        for (i, heads) in headers.chunks(chunk).enumerate() {
            let data = &scratch[i * chunk * plane..(i * chunk + heads.len()) * plane];
            match self.run_batch(heads, data) {
                Ok(batch) => verdicts.extend(batch),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.scratch = scratch;
        outcome.map(|()| verdicts)
    }

    /// One model run over `headers.len()` frames' CHW data; a model with a fixed batch larger
    /// than that gets copies of the last frame, whose verdicts are dropped.
    fn run_batch(&mut self, headers: &[&FrameHeader], data: &[f32]) -> Result<Vec<FireVerdict>, OnnxError> {
        let (w, h) = (self.options.width, self.options.height);
        let n = headers.len();
        let (mut padded, mut padded_headers) = (Vec::new(), Vec::new());
        let (data, all_headers) = match self.fixed_batch {
            Some(fixed) if n < fixed => {
                let last = &data[data.len() - data.len() / n..];
                padded.extend_from_slice(data);
                padded_headers.extend_from_slice(headers);
                for _ in n..fixed {
                    padded.extend_from_slice(last);
                    padded_headers.push(headers[n - 1]);
                }
                (&padded[..], &padded_headers[..])
            }
            _ => (data, headers),
        };
        let rows = all_headers.len();
        let started = Instant::now();
        let outputs = self.model.run(&[rows as i64, 3, i64::from(h), i64::from(w)], data)?;
        let per_frame_ms = started.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64;
        let outputs: Vec<ModelOutput<'_>> = outputs.iter().map(|o| ModelOutput { name: &o.name, shape: &o.shape, data: &o.data }).collect();
        let reading = OutputReading {
            input: (w, h),
            region_threshold: self.options.region_threshold,
            max_regions: self.options.max_regions,
            yolo: &self.options.yolo,
            inference_ms: per_frame_ms,
        };
        let mut verdicts = self
            .options
            .kind
            .verdicts(&outputs, all_headers, &reading)
            .map_err(|e| OnnxError::Run { model: self.model.name.clone(), reason: e.to_string() })?;
        verdicts.truncate(n);
        Ok(verdicts)
    }
}

impl BatchModel for FireDetector {
    type Item = Rc<VideoRecord>;
    type Output = FireVerdict;

    fn wants(&self, item: &Rc<VideoRecord>) -> bool {
        matches!(**item, VideoRecord::Frame { .. })
    }

    fn run(&mut self, batch: &[Rc<VideoRecord>]) -> Result<Vec<FireVerdict>, String> {
        let frames: Vec<&VideoRecord> = batch.iter().map(|r| &**r).collect();
        self.detect(&frames).map_err(|e| e.to_string())
    }
}
