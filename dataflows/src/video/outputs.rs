//! How a fire model's outputs are read: the output conventions pitwall knows, each turned into
//! one [`FireVerdict`] per frame. Adding a convention is adding a [`FireOutputs`] variant here
//! (its name, the outputs it needs, how they are read); the CLI, the ONNX adapter and the job
//! take the enum as it is.

use std::str::FromStr;

use super::detect::{decode_yolo, DetectError, FireVerdict, YoloDecode};
use super::frame::FrameHeader;
use super::overlay::{hot_regions, Heatmap, Region};

/// A fire model's output convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FireOutputs {
    /// Outputs `heatmap [N,1,H,W]` (per-cell fire likelihood) and `score [N,1]` (pitwall's own
    /// models).
    #[default]
    Heatmap,
    /// One output `[N, 4 + C, K]`: YOLO-style boxes with class scores, NMS in pitwall.
    Yolo,
}

/// One named output tensor of a model run, as the runtime returned it.
#[derive(Clone, Copy, Debug)]
pub struct ModelOutput<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
    pub data: &'a [f32],
}

/// What reading a batch's outputs needs besides the outputs.
#[derive(Clone, Debug)]
pub struct OutputReading<'a> {
    /// The model input size frames were resized to, `(width, height)`.
    pub input: (u32, u32),
    /// Heatmap cells at or above this form hot regions.
    pub region_threshold: f32,
    pub max_regions: usize,
    pub yolo: &'a YoloDecode,
    /// Wall time of the batch's run divided by its frames.
    pub inference_ms: f64,
}

impl FireOutputs {
    pub const ALL: [FireOutputs; 2] = [FireOutputs::Heatmap, FireOutputs::Yolo];

    /// The name the CLI takes (`--fire-model-kind`).
    pub fn name(self) -> &'static str {
        match self {
            FireOutputs::Heatmap => "heatmap",
            FireOutputs::Yolo => "yolo",
        }
    }

    /// Whether a model with these output names follows this convention; why not if it does not.
    pub fn check(self, outputs: &[String]) -> Result<(), String> {
        match self {
            FireOutputs::Heatmap if ["heatmap", "score"].iter().all(|needed| outputs.iter().any(|o| o == needed)) => Ok(()),
            FireOutputs::Heatmap => Err(format!("a heatmap fire model needs outputs `heatmap` and `score`; it has {outputs:?}")),
            FireOutputs::Yolo if outputs.len() == 1 => Ok(()),
            FireOutputs::Yolo => Err(format!("a YOLO model has one output [N, 4 + classes, boxes]; it has {outputs:?}")),
        }
    }

    /// One verdict per frame of the batch (`frames` are the frames' headers, in batch order).
    pub fn verdicts(
        self,
        outputs: &[ModelOutput<'_>],
        frames: &[&FrameHeader],
        reading: &OutputReading<'_>,
    ) -> Result<Vec<FireVerdict>, DetectError> {
        let n = frames.len();
        let named = |name: &str| outputs.iter().find(|o| o.name == name).ok_or_else(|| DetectError::MissingOutput(name.to_string()));
        let mut verdicts = Vec::with_capacity(n);
        match self {
            FireOutputs::Heatmap => {
                let (heat, score) = (named("heatmap")?, named("score")?);
                let plane = heat.data.len() / n.max(1);
                if heat.shape.len() != 4 || heat.shape[0] as usize != n || plane == 0 || score.data.len() != n {
                    return Err(DetectError::Outputs(format!("shapes heatmap {:?}, score {:?} for a batch of {n}", heat.shape, score.shape)));
                }
                let (hw, hh) = (heat.shape[3] as u32, heat.shape[2] as u32);
                for (i, header) in frames.iter().enumerate() {
                    let heatmap = Heatmap { width: hw, height: hh, values: heat.data[i * plane..(i + 1) * plane].to_vec() };
                    let regions = hot_regions(&heatmap, reading.region_threshold, header.width, header.height, reading.max_regions);
                    let s = score.data[i];
                    let score = if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 };
                    verdicts.push(FireVerdict { score, heatmap: Some(heatmap), regions, inference_ms: reading.inference_ms });
                }
            }
            FireOutputs::Yolo => {
                let out = outputs.first().ok_or_else(|| DetectError::MissingOutput("[N, 4 + classes, boxes]".into()))?;
                let (w, h) = reading.input;
                let fire_label = reading.yolo.classes.first().map(String::as_str).unwrap_or("fire");
                for (i, header) in frames.iter().enumerate() {
                    let (sx, sy) = (header.width as f32 / w as f32, header.height as f32 / h as f32);
                    let regions = decode_yolo(out.data, out.shape, i, sx, sy, reading.yolo)?;
                    let score = regions.iter().filter(|r| r.label == fire_label).map(|r| r.score).fold(0.0_f32, f32::max);
                    let heatmap = boxes_heatmap(&regions, header.width, header.height);
                    verdicts.push(FireVerdict { score, heatmap: Some(heatmap), regions, inference_ms: reading.inference_ms });
                }
            }
        }
        Ok(verdicts)
    }
}

impl FromStr for FireOutputs {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        FireOutputs::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| {
            let names: Vec<&str> = FireOutputs::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fire model output convention `{text}`; one of {}", names.join(", "))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_convention_parses_by_its_name_and_checks_its_outputs() {
        for kind in FireOutputs::ALL {
            assert_eq!(kind.name().parse::<FireOutputs>(), Ok(kind));
        }
        assert!("ssd".parse::<FireOutputs>().unwrap_err().contains("heatmap, yolo"));
        assert!(FireOutputs::Heatmap.check(&["score".into(), "heatmap".into()]).is_ok());
        assert!(FireOutputs::Heatmap.check(&["output0".into()]).is_err());
        assert!(FireOutputs::Yolo.check(&["output0".into()]).is_ok());
        assert!(FireOutputs::Yolo.check(&["a".into(), "b".into()]).is_err());
    }
}
