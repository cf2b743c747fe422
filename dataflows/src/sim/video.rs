//! A generated test clip: a street scene (sky, building, road, grass, a red car driving by) and,
//! with fire, flickering flame-coloured regions at the building's foot during known frames.
//! The red car is there on purpose: a saturated red object that a fire detector must not flag.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::video::frame::RgbImage;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u64,
    pub fire: bool,
    pub seed: u64,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig { width: 320, height: 180, fps: 25, frames: 250, fire: true, seed: 7 }
    }
}

/// Which frames contain fire: half-open ranges `[start, end)` of frame indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FireTruth {
    pub frames: u64,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    pub fire_ranges: Vec<(u64, u64)>,
}

impl FireTruth {
    pub fn has_fire(&self, frame: u64) -> bool {
        self.fire_ranges.iter().any(|(a, b)| (*a..*b).contains(&frame))
    }
}

/// A deterministic scene: the same config gives the same pixels.
#[derive(Clone, Debug)]
pub struct Scene {
    config: SceneConfig,
    background: RgbImage,
    flames: Vec<(f32, f32, f32)>,
}

impl Scene {
    pub fn new(config: SceneConfig) -> Scene {
        let (w, h) = (config.width.max(16), config.height.max(16));
        let config = SceneConfig { width: w, height: h, ..config };
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut background = RgbImage::new(w, h);
        let horizon = h * 55 / 100;
        let road_top = h * 75 / 100;
        let road_bottom = h * 88 / 100;
        for y in 0..h {
            for x in 0..w {
                let noise = rng.random_range(-6_i16..=6);
                let rgb: [i16; 3] = if y < horizon {
                    let t = y as f32 / horizon as f32;
                    [(110.0 + 60.0 * t) as i16, (160.0 + 40.0 * t) as i16, (220.0 + 15.0 * t) as i16]
                } else if (road_top..road_bottom).contains(&y) {
                    [90, 90, 95]
                } else {
                    [70, 110, 60]
                };
                background.put(x, y, rgb.map(|c| (c + noise).clamp(0, 255) as u8));
            }
        }
        // A building with lit windows, standing on the horizon.
        let (bx0, bx1, by0) = (w * 30 / 100, w * 62 / 100, h * 18 / 100);
        for y in by0..horizon {
            for x in bx0..bx1 {
                let window = (x - bx0) % 14 >= 4 && (x - bx0) % 14 < 10 && (y - by0) % 16 >= 4 && (y - by0) % 16 < 11;
                background.put(x, y, if window { [200, 210, 220] } else { [120, 100, 90] });
            }
        }
        // Flame centres (fractions of the frame) along the building's foot.
        let flames = (0..3).map(|i| (0.36 + 0.1 * i as f32, 0.55, 0.9 + 0.2 * rng.random::<f32>())).collect();
        Scene { config, background, flames }
    }

    /// The ground truth: with fire, frames `[frames/5, 4*frames/5)` burn.
    pub fn truth(&self) -> FireTruth {
        let c = &self.config;
        FireTruth {
            frames: c.frames,
            fps: c.fps,
            width: c.width,
            height: c.height,
            fire_ranges: if c.fire { vec![(c.frames / 5, c.frames * 4 / 5)] } else { Vec::new() },
        }
    }

    /// Frame `index`.
    pub fn frame(&self, index: u64) -> RgbImage {
        let c = &self.config;
        let (w, h) = (c.width, c.height);
        let mut image = self.background.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // The red car drives left to right along the road, 2% of the width per frame.
        let car_w = w / 6;
        let car_h = h / 12;
        let car_x = ((index * u64::from(w) / 50) % u64::from(w + car_w)) as i64 - i64::from(car_w);
        let car_y = h * 78 / 100;
        for y in car_y..(car_y + car_h).min(h) {
            for x in car_x.max(0)..(car_x + i64::from(car_w)).min(i64::from(w)) {
                image.put(x as u32, y, [205, 28, 30]);
            }
        }
        if self.truth().has_fire(index) {
            for (k, &(fx, fy, scale)) in self.flames.iter().enumerate() {
                let flicker = 0.8 + 0.4 * (((index as f32) * 0.9 + k as f32 * 2.1).sin() * 0.5 + 0.5);
                let drift = ((index as f32) * 0.05 + k as f32).sin() * 0.01;
                let (cx, base) = ((fx + drift) * w as f32, fy * h as f32);
                let (rx, ry) = (w as f32 * 0.045 * scale, h as f32 * 0.16 * scale * flicker);
                let x0 = (cx - rx).floor().max(0.0) as u32;
                let x1 = ((cx + rx).ceil() as u32).min(w);
                let y0 = (base - ry).floor().max(0.0) as u32;
                let y1 = (base.ceil() as u32 + 2).min(h);
                for y in y0..y1 {
                    for x in x0..x1 {
                        // A teardrop: widest at the base, narrowing upwards.
                        let up = ((base - y as f32) / ry).clamp(0.0, 1.0);
                        let half = rx * (1.0 - up * up).sqrt().max(0.05) * (1.0 - 0.5 * up);
                        let d = (x as f32 - cx).abs() / half;
                        if d > 1.0 {
                            continue;
                        }
                        let heat = (1.0 - d) * (1.0 - 0.6 * up);
                        let jitter: f32 = rng.random_range(-12.0..12.0);
                        let g = (110.0 + 140.0 * heat + jitter).clamp(60.0, 250.0);
                        let b = (20.0 + 110.0 * heat * heat).clamp(0.0, 140.0);
                        image.put(x, y, [255, g as u8, b as u8]);
                    }
                }
            }
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_frames_have_flame_colours_and_others_do_not() {
        let scene = Scene::new(SceneConfig { frames: 50, ..SceneConfig::default() });
        let flame_pixels = |image: &RgbImage| image.pixels.chunks(3).filter(|p| p[0] > 240 && p[1] > 100 && p[2] < 150 && p[1] > p[2] + 40).count();
        let truth = scene.truth();
        assert_eq!(truth.fire_ranges, vec![(10, 40)]);
        for i in 0..50 {
            let n = flame_pixels(&scene.frame(i));
            if truth.has_fire(i) {
                assert!(n > 200, "frame {i}: {n} flame pixels");
            } else {
                assert_eq!(n, 0, "frame {i}");
            }
        }
        assert_eq!(scene.frame(3), scene.frame(3));
        let calm = Scene::new(SceneConfig { fire: false, ..SceneConfig::default() });
        assert!(calm.truth().fire_ranges.is_empty());
        assert!((0..250).step_by(10).all(|i| flame_pixels(&calm.frame(i)) == 0));
    }
}
