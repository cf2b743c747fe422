//! The fire model of the video pipeline, as a [`BatchModel`] over frames: either a heatmap
//! model (pitwall's default `models/fire_colour.onnx`: outputs `heatmap [N,1,H,W]` and
//! `score [N,1]`) or a YOLO-style detector (one output `[N, 4 + C, K]`, NMS in Rust).

use std::rc::Rc;
use std::time::Instant;

use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::video::detect::{decode_yolo, to_chw, FireVerdict, YoloDecode};
use pitwall_dataflows::video::frame::VideoRecord;
use pitwall_dataflows::video::overlay::{hot_regions, Heatmap, Region};

use super::{ModelSource, OnnxError, OnnxModel};

/// Which output convention the model follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireModelKind {
    /// Outputs `heatmap` and `score`.
    Heatmap,
    /// One output `[N, 4 + C, K]`.
    Yolo,
}

/// How frames are fed and verdicts drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct FireOptions {
    pub kind: FireModelKind,
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
            kind: FireModelKind::Heatmap,
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
        match options.kind {
            FireModelKind::Heatmap => {
                for needed in ["heatmap", "score"] {
                    if !model.outputs.iter().any(|o| o == needed) {
                        return Err(fail(format!("a heatmap fire model needs outputs `heatmap` and `score`; it has {:?}", model.outputs)));
                    }
                }
            }
            FireModelKind::Yolo => {
                if model.outputs.len() != 1 {
                    return Err(fail(format!("a YOLO model has one output [N, 4 + classes, boxes]; it has {:?}", model.outputs)));
                }
            }
        }
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
        let bad = |reason: String| OnnxError::Run { model: self.model.name.clone(), reason };
        let mut verdicts = Vec::with_capacity(n);
        match self.options.kind {
            FireModelKind::Heatmap => {
                let heat = outputs.iter().find(|o| o.name == "heatmap").expect("checked at load");
                let score = outputs.iter().find(|o| o.name == "score").expect("checked at load");
                let plane = heat.data.len() / n.max(1);
                if heat.shape.len() != 4 || heat.shape[0] as usize != n || plane == 0 || score.data.len() != n {
                    return Err(bad(format!("outputs have shapes heatmap {:?}, score {:?} for a batch of {n}", heat.shape, score.shape)));
                }
                let (hw, hh) = (heat.shape[3] as u32, heat.shape[2] as u32);
                for (i, record) in frames.iter().enumerate() {
                    let header = record.header();
                    let heatmap = Heatmap { width: hw, height: hh, values: heat.data[i * plane..(i + 1) * plane].to_vec() };
                    let regions = hot_regions(&heatmap, self.options.region_threshold, header.width, header.height, self.options.max_regions);
                    let s = score.data[i];
                    let score = if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 };
                    verdicts.push(FireVerdict { score, heatmap: Some(heatmap), regions, inference_ms: per_frame_ms });
                }
            }
            FireModelKind::Yolo => {
                let out = &outputs[0];
                for (i, record) in frames.iter().enumerate() {
                    let header = record.header();
                    let (sx, sy) = (header.width as f32 / w as f32, header.height as f32 / h as f32);
                    let regions = decode_yolo(&out.data, &out.shape, i, sx, sy, &self.options.yolo).map_err(|e| bad(e.to_string()))?;
                    let fire_label = self.options.yolo.classes.first().map(String::as_str).unwrap_or("fire");
                    let score = regions.iter().filter(|r| r.label == fire_label).map(|r| r.score).fold(0.0_f32, f32::max);
                    let heatmap = boxes_heatmap(&regions, header.width, header.height);
                    verdicts.push(FireVerdict { score, heatmap: Some(heatmap), regions, inference_ms: per_frame_ms });
                }
            }
        }
        Ok(verdicts)
    }
}

/// A 64x64 map with each box painted at its score (the largest where boxes overlap), so a
/// detector's output can be overlaid like a heatmap.
fn boxes_heatmap(regions: &[Region], frame_width: u32, frame_height: u32) -> Heatmap {
    const SIZE: u32 = 64;
    let mut values = vec![0.0_f32; (SIZE * SIZE) as usize];
    let (sx, sy) = (SIZE as f32 / frame_width.max(1) as f32, SIZE as f32 / frame_height.max(1) as f32);
    for r in regions {
        let x0 = (r.x * sx).floor().clamp(0.0, SIZE as f32) as u32;
        let y0 = (r.y * sy).floor().clamp(0.0, SIZE as f32) as u32;
        let x1 = ((r.x + r.width) * sx).ceil().clamp(0.0, SIZE as f32) as u32;
        let y1 = ((r.y + r.height) * sy).ceil().clamp(0.0, SIZE as f32) as u32;
        for y in y0..y1 {
            for x in x0..x1 {
                let v = &mut values[(y * SIZE + x) as usize];
                *v = v.max(r.score);
            }
        }
    }
    Heatmap { width: SIZE, height: SIZE, values }
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
