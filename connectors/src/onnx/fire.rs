//! The fire model of the video pipeline, as a [`BatchModel`] over frames: frames in, the model
//! run, its outputs read by `dataflows/src/video/outputs.rs` (`FireOutputs`): either a heatmap
//! model (pitwall's default `models/fire_colour.onnx`: outputs `heatmap [N,1,H,W]` and
//! `score [N,1]`) or a YOLO-style detector (one output `[N, 4 + C, K]`, NMS in Rust).

use std::rc::Rc;
use std::time::Instant;

use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::video::detect::{to_chw, FireVerdict, YoloDecode};
use pitwall_dataflows::video::frame::VideoRecord;
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
    scratch: Vec<f32>,
}

impl FireDetector {
    /// Loads and checks the model: a missing file, a wrong input, or missing outputs are
    /// start-up errors, not per-frame ones.
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
        Ok(FireDetector { model, options, scratch: Vec::new() })
    }

    pub fn name(&self) -> &str {
        &self.model.name
    }

    /// Runs the model on frames (all must be `VideoRecord::Frame`).
    pub fn detect(&mut self, frames: &[&VideoRecord]) -> Result<Vec<FireVerdict>, OnnxError> {
        let (w, h) = (self.options.width, self.options.height);
        self.scratch.clear();
        for record in frames {
            if let VideoRecord::Frame { image, .. } = record {
                to_chw(image, w, h, &mut self.scratch);
            }
        }
        let n = self.scratch.len() / (3 * w as usize * h as usize);
        if n != frames.len() {
            return Err(OnnxError::Run { model: self.model.name.clone(), reason: "end-of-video markers cannot be run through the model".into() });
        }
        let started = Instant::now();
        let outputs = self.model.run(&[n as i64, 3, i64::from(h), i64::from(w)], &self.scratch)?;
        let per_frame_ms = started.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64;
        let outputs: Vec<ModelOutput<'_>> = outputs.iter().map(|o| ModelOutput { name: &o.name, shape: &o.shape, data: &o.data }).collect();
        let headers: Vec<_> = frames.iter().map(|r| r.header()).collect();
        let reading = OutputReading {
            input: (w, h),
            region_threshold: self.options.region_threshold,
            max_regions: self.options.max_regions,
            yolo: &self.options.yolo,
            inference_ms: per_frame_ms,
        };
        self.options.kind.verdicts(&outputs, &headers, &reading).map_err(|e| OnnxError::Run { model: self.model.name.clone(), reason: e.to_string() })
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
