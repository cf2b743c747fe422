//! Heatmap overlay: a model's per-pixel fire likelihood (at model resolution, values in 0..=1)
//! drawn over the frame with a colour map, blended in proportion to the likelihood.

use super::frame::RgbImage;

/// A single-channel map of values in `0..=1`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

impl Heatmap {
    pub fn at(&self, x: u32, y: u32) -> f32 {
        self.values[y as usize * self.width as usize + x as usize]
    }
}

/// The "hot" colour map: black-red-yellow-white over 0..=1.
pub fn hot_colour(value: f32) -> [u8; 3] {
    let v = value.clamp(0.0, 1.0) * 3.0;
    let channel = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(v), channel(v - 1.0), channel(v - 2.0)]
}

/// How the heatmap is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayStyle {
    /// Opacity of the colour at likelihood 1 (it scales linearly with the likelihood).
    pub max_alpha: f32,
    /// Likelihoods below this are not drawn at all (keeps the untouched scene sharp).
    pub floor: f32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        OverlayStyle { max_alpha: 0.6, floor: 0.05 }
    }
}

/// Where output coordinate `i` (of `out` cells) samples an input of `len` cells, bilinear with
/// centres aligned: the two neighbours and the weight of the second. Computed once per axis,
/// not once per pixel (the per-pixel `floor` was a tenth of the video pipeline's profile).
pub(crate) fn bilinear_axis(len: u32, out: u32) -> Vec<(u32, u32, f32)> {
    let scale = len as f32 / out.max(1) as f32;
    let last = len.saturating_sub(1);
    (0..out)
        .map(|i| {
            let f = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, last as f32);
            let lo = f.floor() as u32;
            (lo, (lo + 1).min(last), f - lo as f32)
        })
        .collect()
}

/// Blends `heatmap` (scaled to the frame, bilinear) over `frame` in place. A heatmap with no
/// cell at or above the floor leaves the frame untouched without visiting its pixels.
pub fn overlay_heatmap(frame: &mut RgbImage, heatmap: &Heatmap, style: OverlayStyle) {
    if heatmap.width == 0 || heatmap.height == 0 || frame.width == 0 || frame.height == 0 {
        return;
    }
    if !heatmap.values.iter().any(|v| *v >= style.floor) {
        return;
    }
    let columns = bilinear_axis(heatmap.width, frame.width);
    let rows = bilinear_axis(heatmap.height, frame.height);
    let hw = heatmap.width as usize;
    for (y, &(y0, y1, ty)) in rows.iter().enumerate() {
        let (top, bottom) = (&heatmap.values[y0 as usize * hw..][..hw], &heatmap.values[y1 as usize * hw..][..hw]);
        let line = &mut frame.pixels[y * frame.width as usize * 3..][..frame.width as usize * 3];
        for (pixel, &(x0, x1, tx)) in line.chunks_exact_mut(3).zip(&columns) {
            let (x0, x1) = (x0 as usize, x1 as usize);
            let upper = top[x0] + (top[x1] - top[x0]) * tx;
            let lower = bottom[x0] + (bottom[x1] - bottom[x0]) * tx;
            let value = upper + (lower - upper) * ty;
            if value.is_nan() || value < style.floor {
                continue;
            }
            let alpha = (value.min(1.0) * style.max_alpha).clamp(0.0, 1.0);
            let colour = hot_colour(value);
            for (channel, colour) in pixel.iter_mut().zip(colour) {
                *channel = (f32::from(*channel) * (1.0 - alpha) + f32::from(colour) * alpha).round() as u8;
            }
        }
    }
}

/// An axis-aligned box in frame pixels, with the score that put it there.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
    /// Class name (detection models) or "fire" (heatmap regions).
    pub label: String,
}

impl Region {
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &Region) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// The hot regions of a heatmap: bounding boxes of the 4-connected components of cells at or
/// above `threshold`, scaled to a `frame_width x frame_height` frame, largest first, at most
/// `limit`. Each region's score is its component's peak value.
pub fn hot_regions(heatmap: &Heatmap, threshold: f32, frame_width: u32, frame_height: u32, limit: usize) -> Vec<Region> {
    let (w, h) = (heatmap.width as usize, heatmap.height as usize);
    let mut seen = vec![false; w * h];
    let mut regions: Vec<(usize, Region)> = Vec::new();
    let sx = frame_width as f32 / w.max(1) as f32;
    let sy = frame_height as f32 / h.max(1) as f32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if seen[start] || heatmap.values[start].is_nan() || heatmap.values[start] < threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1, mut cells, mut peak) = (w, h, 0, 0, 0_usize, 0_f32);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            cells += 1;
            peak = peak.max(heatmap.values[i]);
            let neighbours = [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)];
            for n in neighbours.into_iter().flatten() {
                if !seen[n] && heatmap.values[n] >= threshold {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        let region = Region {
            x: x0 as f32 * sx,
            y: y0 as f32 * sy,
            width: (x1 - x0 + 1) as f32 * sx,
            height: (y1 - y0 + 1) as f32 * sy,
            score: peak,
            label: "fire".into(),
        };
        regions.push((cells, region));
    }
    regions.sort_by_key(|(cells, _)| std::cmp::Reverse(*cells));
    regions.into_iter().take(limit).map(|(_, r)| r).collect()
}

/// `image` scaled to `width` (aspect kept, nearest pixel): a dashboard thumbnail.
pub fn thumbnail(image: &RgbImage, width: u32) -> RgbImage {
    let width = width.min(image.width).max(1);
    let height = ((u64::from(image.height) * u64::from(width) / u64::from(image.width.max(1))) as u32).max(1);
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        for x in 0..width {
            let sx = (u64::from(x) * u64::from(image.width) / u64::from(width)) as u32;
            let sy = (u64::from(y) * u64::from(image.height) / u64::from(height)) as u32;
            out.put(x, y, image.pixel(sx, sy));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(width: u32, height: u32, hot: &[(u32, u32, f32)]) -> Heatmap {
        let mut values = vec![0.0; (width * height) as usize];
        for &(x, y, v) in hot {
            values[(y * width + x) as usize] = v;
        }
        Heatmap { width, height, values }
    }

    #[test]
    fn overlay_colours_only_where_the_map_is_hot() {
        let mut frame = RgbImage { width: 8, height: 8, pixels: vec![40; 8 * 8 * 3] };
        let heat = map(2, 2, &[(1, 1, 1.0)]);
        overlay_heatmap(&mut frame, &heat, OverlayStyle::default());
        // Top-left stays untouched; bottom-right is blended towards white-hot.
        assert_eq!(frame.pixel(0, 0), [40, 40, 40]);
        let hot = frame.pixel(7, 7);
        assert!(hot[0] > 150 && hot[1] > 150, "{hot:?}");
    }

    #[test]
    fn colour_map_runs_black_red_yellow_white() {
        assert_eq!(hot_colour(0.0), [0, 0, 0]);
        assert_eq!(hot_colour(1.0 / 3.0), [255, 0, 0]);
        assert_eq!(hot_colour(2.0 / 3.0), [255, 255, 0]);
        assert_eq!(hot_colour(1.0), [255, 255, 255]);
        assert_eq!(hot_colour(f32::NAN), [0, 0, 0]);
    }

    #[test]
    fn regions_are_connected_components_scaled_to_the_frame() {
        let heat = map(4, 4, &[(0, 0, 0.9), (1, 0, 0.8), (3, 3, 0.7), (3, 2, 0.6), (2, 0, 0.1)]);
        let regions = hot_regions(&heat, 0.5, 40, 40, 10);
        assert_eq!(regions.len(), 2);
        assert_eq!((regions[0].x, regions[0].y, regions[0].width, regions[0].height, regions[0].score), (0.0, 0.0, 20.0, 10.0, 0.9));
        assert_eq!((regions[1].x, regions[1].y, regions[1].width, regions[1].height), (30.0, 20.0, 10.0, 20.0));
        assert_eq!(hot_regions(&heat, 0.5, 40, 40, 1).len(), 1);
        assert!(hot_regions(&map(2, 2, &[(0, 0, f32::NAN)]), 0.5, 2, 2, 4).is_empty());
    }

    #[test]
    fn iou_of_disjoint_nested_and_equal_boxes() {
        let a = Region { x: 0.0, y: 0.0, width: 10.0, height: 10.0, score: 1.0, label: "fire".into() };
        let b = Region { x: 20.0, ..a.clone() };
        let c = Region { x: 5.0, ..a.clone() };
        assert_eq!(a.iou(&b), 0.0);
        assert_eq!(a.iou(&a), 1.0);
        assert!((a.iou(&c) - 50.0 / 150.0).abs() < 1e-6);
    }
}
