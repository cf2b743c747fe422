//! Model-agnostic detection logic: frame -> model input tensor, YOLO-style output -> boxes
//! (with non-maximum suppression), and the `fire-detections` record.

use super::frame::RgbImage;
use super::overlay::{bilinear_axis, Region};

/// Resizes `image` (bilinear) to `width x height` and lays it out as planar float RGB in 0..=1
/// (`[3, H, W]`, the per-frame slice of an `[N, 3, H, W]` batch), appended to `out`.
pub fn to_chw(image: &RgbImage, width: u32, height: u32, out: &mut Vec<f32>) {
    let plane = width as usize * height as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    if image.width == 0 || image.height == 0 {
        return;
    }
    let columns = bilinear_axis(image.width, width);
    let rows = bilinear_axis(image.height, height);
    let stride = image.width as usize * 3;
    let (r_plane, rest) = out[start..].split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    let mut at = 0;
    for &(y0, y1, ty) in &rows {
        let (top, bottom) = (&image.pixels[y0 as usize * stride..][..stride], &image.pixels[y1 as usize * stride..][..stride]);
        for &(x0, x1, tx) in &columns {
            let (a, b) = (x0 as usize * 3, x1 as usize * 3);
            for (ch, plane) in [&mut *r_plane, &mut *g_plane, &mut *b_plane].into_iter().enumerate() {
                let upper = f32::from(top[a + ch]) + (f32::from(top[b + ch]) - f32::from(top[a + ch])) * tx;
                let lower = f32::from(bottom[a + ch]) + (f32::from(bottom[b + ch]) - f32::from(bottom[a + ch])) * tx;
                plane[at] = (upper + (lower - upper) * ty) * (1.0 / 255.0);
            }
            at += 1;
        }
    }
}

/// How YOLO-style outputs are turned into boxes.
#[derive(Clone, Debug, PartialEq)]
pub struct YoloDecode {
    /// Boxes whose best class score is below this are dropped.
    pub confidence: f32,
    /// Of two boxes of one class overlapping more than this (IoU), the lower-scored is dropped.
    pub iou: f32,
    /// Class names by index; a missing name becomes `class<i>`.
    pub classes: Vec<String>,
    /// Most boxes kept per frame.
    pub max_boxes: usize,
    /// How the model's class scores become probabilities.
    pub scores: ScoreScale,
}

impl Default for YoloDecode {
    fn default() -> Self {
        YoloDecode { confidence: 0.25, iou: 0.45, classes: vec!["fire".into(), "smoke".into()], max_boxes: 100, scores: ScoreScale::Auto }
    }
}

/// How a YOLO model's class scores are read. Nothing assumes they lie in [0, 1]: quantized
/// exports overshoot 1.0, some exports leave the final sigmoid out (logits), and integer-style
/// exports score on 0..255.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScoreScale {
    /// Per frame: scores below [`AUTO_LOGIT_BELOW`] mean the model emits logits (sigmoid is
    /// applied); otherwise they are probabilities and overshoot is clamped (1.02 counts as 1.0).
    Auto,
    /// Probabilities, clamped to [0, 1].
    Probability,
    /// Logits: `1 / (1 + e^-s)`.
    Logit,
    /// Scores on `0..=max` (e.g. 255): divided by `max`, then clamped to [0, 1].
    Scale(f32),
}

/// Under [`ScoreScale::Auto`], a class score below this marks a frame's scores as logits
/// (probabilities with quantization noise do not go this far below zero).
pub const AUTO_LOGIT_BELOW: f32 = -0.05;

impl ScoreScale {
    /// Scores of one image (`scores` are the class rows), normalised to [0, 1] in place; NaN stays NaN.
    fn normalise(self, scores: &mut [f32]) {
        let logits = match self {
            ScoreScale::Auto => scores.iter().any(|s| *s < AUTO_LOGIT_BELOW),
            ScoreScale::Logit => true,
            ScoreScale::Probability | ScoreScale::Scale(_) => false,
        };
        let divisor = match self {
            ScoreScale::Scale(max) if max.is_finite() && max > 0.0 => max,
            _ => 1.0,
        };
        for s in scores.iter_mut() {
            *s = if logits { 1.0 / (1.0 + (-*s).exp()) } else { (*s / divisor).clamp(0.0, 1.0) };
        }
    }
}

/// The flag's own spelling, so that `parse` reads it back.
impl std::fmt::Display for ScoreScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreScale::Auto => write!(f, "auto"),
            ScoreScale::Probability => write!(f, "probability"),
            ScoreScale::Logit => write!(f, "logit"),
            ScoreScale::Scale(max) => write!(f, "scale={max}"),
        }
    }
}

impl std::str::FromStr for ScoreScale {
    type Err = String;
    fn from_str(text: &str) -> Result<ScoreScale, String> {
        match text.trim() {
            "auto" => Ok(ScoreScale::Auto),
            "probability" => Ok(ScoreScale::Probability),
            "logit" => Ok(ScoreScale::Logit),
            other => other
                .strip_prefix("scale=")
                .and_then(|m| m.parse::<f32>().ok())
                .filter(|m| m.is_finite() && *m > 0.0)
                .map(ScoreScale::Scale)
                .ok_or_else(|| format!("expected auto, probability, logit or scale=MAX (e.g. scale=255), got {other:?}")),
        }
    }
}

/// Why a detection output could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectError {
    #[error("detection output has shape {0:?}; expected [N, 4 + classes, boxes] with at least one class")]
    Shape(Vec<i64>),
    #[error("the model gave no output `{0}`")]
    MissingOutput(String),
    #[error("outputs have {0}")]
    Outputs(String),
}

/// Decodes one image of a YOLO (v5u/v8/v11 export) output `[N, 4 + C, K]`: for each of the K
/// candidates, rows 0..4 are the box centre x, y, width and height in model-input pixels and rows
/// 4.. are the class scores. Boxes are scaled by (`scale_x`, `scale_y`) to frame pixels, then
/// non-maximum suppression runs per class. Scores are first normalised by `config.scores`
/// ([`ScoreScale`]). Sorted by score, highest first.
pub fn decode_yolo(output: &[f32], shape: &[i64], image: usize, scale_x: f32, scale_y: f32, config: &YoloDecode) -> Result<Vec<Region>, DetectError> {
    let [n, rows, k] = shape else { return Err(DetectError::Shape(shape.to_vec())) };
    let (n, rows, k) = (*n as usize, *rows as usize, *k as usize);
    if rows < 5 || image >= n || output.len() < n * rows * k {
        return Err(DetectError::Shape(shape.to_vec()));
    }
    let mut data = output[image * rows * k..(image + 1) * rows * k].to_vec();
    config.scores.normalise(&mut data[4 * k..]);
    let at = |row: usize, j: usize| data[row * k + j];
    let mut candidates: Vec<(usize, Region)> = Vec::new();
    for j in 0..k {
        let (class, score) = (4..rows).map(|r| (r - 4, at(r, j))).fold((0, f32::NEG_INFINITY), |best, c| if c.1 > best.1 { c } else { best });
        // NaN scores fail this test too.
        if score.is_nan() || score < config.confidence {
            continue;
        }
        let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
        if ![cx, cy, w, h].iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
            continue;
        }
        let label = config.classes.get(class).cloned().unwrap_or_else(|| format!("class{class}"));
        let region = Region { x: (cx - w / 2.0) * scale_x, y: (cy - h / 2.0) * scale_y, width: w * scale_x, height: h * scale_y, score, label };
        candidates.push((class, region));
    }
    candidates.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    let mut kept: Vec<(usize, Region)> = Vec::new();
    for (class, region) in candidates {
        if kept.len() >= config.max_boxes {
            break;
        }
        if kept.iter().all(|(c, k)| *c != class || k.iou(&region) <= config.iou) {
            kept.push((class, region));
        }
    }
    Ok(kept.into_iter().map(|(_, r)| r).collect())
}

/// What the fire model says about one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FireVerdict {
    pub score: f32,
    /// Per-pixel fire likelihood at model resolution (heatmap models only).
    pub heatmap: Option<super::overlay::Heatmap>,
    pub regions: Vec<Region>,
    /// Wall time of the batch's model run divided by its frames.
    pub inference_ms: f64,
}

/// One frame's verdict, published to `fire-detections` (keyed by video id).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FireDetection {
    pub video_id: String,
    pub frame_index: u64,
    pub pts_ms: i64,
    /// The frame's fire score in 0..=1 (heatmap model: its score output; detection model: the
    /// best box score, 0 without boxes); `None` (JSON `null`) when the model gave no verdict
    /// for this frame (`error` says why): never a made-up 0.
    pub score: Option<f32>,
    /// `score >= threshold`; `None` without a verdict.
    pub fire: Option<bool>,
    /// Hot regions (heatmap model) or detected boxes (detection model), in frame pixels.
    pub regions: Vec<Region>,
    pub model: String,
    /// Wall time of the model run that covered this frame, divided by the frames in its batch.
    pub inference_ms: f64,
    /// The frame's production time to this record's creation.
    pub latency_ms: u64,
    /// Why the model gave no verdict for this frame (no score, no regions), if it did not.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_keeps_colours_in_their_planes() {
        let mut image = RgbImage::new(2, 2);
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            image.put(x, y, [255, 0, 51]);
        }
        let mut out = vec![7.0];
        to_chw(&image, 3, 3, &mut out);
        assert_eq!(out.len(), 1 + 27);
        assert!(out[1..10].iter().all(|v| (*v - 1.0).abs() < 1e-6));
        assert!(out[10..19].iter().all(|v| *v == 0.0));
        assert!(out[19..28].iter().all(|v| (*v - 0.2).abs() < 1e-6));
    }

    /// `[1, 4 + 2, 4]`: two overlapping "fire" boxes, one "smoke" box on top of them, one weak box.
    fn output() -> (Vec<f32>, Vec<i64>) {
        let boxes = [
            // cx, cy, w, h, fire, smoke
            [50.0, 50.0, 20.0, 20.0, 0.9, 0.1],
            [52.0, 51.0, 20.0, 20.0, 0.8, 0.1],
            [50.0, 50.0, 20.0, 20.0, 0.1, 0.7],
            [10.0, 10.0, 4.0, 4.0, 0.1, 0.2],
        ];
        let mut data = vec![0.0; 6 * 4];
        for (j, b) in boxes.iter().enumerate() {
            for (row, v) in b.iter().enumerate() {
                data[row * 4 + j] = *v;
            }
        }
        (data, vec![1, 6, 4])
    }

    #[test]
    fn nms_keeps_the_best_box_per_class_and_scales_it() {
        let (data, shape) = output();
        let boxes = decode_yolo(&data, &shape, 0, 2.0, 1.0, &YoloDecode::default()).unwrap();
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        assert_eq!((boxes[0].label.as_str(), boxes[0].score), ("fire", 0.9));
        assert_eq!((boxes[0].x, boxes[0].y, boxes[0].width, boxes[0].height), (80.0, 40.0, 40.0, 20.0));
        assert_eq!(boxes[1].label, "smoke");
        let loose = YoloDecode { iou: 0.95, ..YoloDecode::default() };
        assert_eq!(decode_yolo(&data, &shape, 0, 1.0, 1.0, &loose).unwrap().len(), 3);
    }

    #[test]
    fn scores_outside_zero_one_are_normalised() {
        let (data, shape) = output();
        // Quantized overshoot: 1.08 is a sure fire, clamped to 1.0, and ranks first.
        let mut overshoot = data.clone();
        overshoot[4 * 4 + 1] = 1.08;
        let boxes = decode_yolo(&overshoot, &shape, 0, 1.0, 1.0, &YoloDecode::default()).unwrap();
        assert_eq!((boxes[0].score, boxes[0].x), (1.0, 42.0));
        assert!(boxes.iter().all(|b| (0.0..=1.0).contains(&b.score)));
        // Logits (a sigmoid left out of the export): auto sees the negatives and applies it.
        let logit = |p: f32| (p / (1.0 - p)).ln();
        let logits: Vec<f32> = data.iter().enumerate().map(|(i, v)| if i >= 16 { logit(*v) } else { *v }).collect();
        let boxes = decode_yolo(&logits, &shape, 0, 1.0, 1.0, &YoloDecode::default()).unwrap();
        assert_eq!(boxes.len(), 2);
        assert!((boxes[0].score - 0.9).abs() < 1e-5 && (boxes[1].score - 0.7).abs() < 1e-5, "{boxes:?}");
        // 0..255 scores, told explicitly.
        let bytes: Vec<f32> = data.iter().enumerate().map(|(i, v)| if i >= 16 { v * 255.0 } else { *v }).collect();
        let config = YoloDecode { scores: "scale=255".parse().unwrap(), ..YoloDecode::default() };
        let boxes = decode_yolo(&bytes, &shape, 0, 1.0, 1.0, &config).unwrap();
        assert!((boxes[0].score - 0.9).abs() < 1e-5 && boxes.len() == 2, "{boxes:?}");
        assert!("scale=0".parse::<ScoreScale>().is_err() && "sigmoid".parse::<ScoreScale>().is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (data, _) = output();
        assert!(decode_yolo(&data, &[1, 4, 6], 0, 1.0, 1.0, &YoloDecode::default()).is_err());
        assert!(decode_yolo(&data, &[2, 6, 4], 0, 1.0, 1.0, &YoloDecode::default()).is_err());
        assert!(decode_yolo(&data, &[24], 0, 1.0, 1.0, &YoloDecode::default()).is_err());
    }
}
