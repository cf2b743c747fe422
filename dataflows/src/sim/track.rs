//! A closed race track and the speed a car can carry around it: straights and constant-radius
//! corners sampled every metre, with grip that grows with speed (downforce), an acceleration
//! limit that falls with speed (drag) and a braking limit. The classic forward/backward pass
//! gives a lap with real braking zones, corner speeds and top speeds.

/// Metres between grid points.
pub const GRID_M: f64 = 1.0;
const G: f64 = 9.81;
/// Top speed of the fastest car, m/s (~331 km/h).
pub const TOP_SPEED: f64 = 92.0;
/// Lateral grip at zero speed and the part added by downforce at top speed, m/s².
const GRIP_BASE: f64 = 1.5 * G;
const GRIP_AERO: f64 = 3.5 * G;
/// Longitudinal acceleration at standstill, falling to zero at top speed (drag), m/s².
const ACCEL_MAX: f64 = 14.0;
/// Braking deceleration, m/s² (~4 g).
const BRAKE_DECEL: f64 = 40.0;

#[derive(Clone, Copy, Debug)]
enum Segment {
    Straight(f64),
    /// Radius in metres and turn in degrees (positive: left).
    Corner(f64, f64),
}

/// The reference circuit: ~4.8 km, a 1 km main straight with DRS, a hairpin and fast sweepers.
const LAYOUT: [Segment; 15] = [
    Segment::Straight(1000.0),
    Segment::Corner(50.0, 100.0),
    Segment::Straight(350.0),
    Segment::Corner(150.0, -45.0),
    Segment::Straight(250.0),
    Segment::Corner(90.0, 80.0),
    Segment::Straight(800.0),
    Segment::Corner(35.0, 150.0),
    Segment::Straight(450.0),
    Segment::Corner(200.0, 35.0),
    Segment::Corner(120.0, -60.0),
    Segment::Straight(600.0),
    Segment::Corner(70.0, 30.0),
    Segment::Straight(300.0),
    Segment::Corner(60.0, 70.0),
];

/// DRS activation zones as (from, to) metres from the start line.
pub const DRS_ZONES: [(f64, f64); 2] = [(150.0, 850.0), (1_500.0, 1_900.0)];

/// One metre of track.
#[derive(Clone, Copy, Debug)]
pub struct TrackPoint {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    /// Corner radius in metres, `None` on a straight.
    pub radius: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Track {
    pub points: Vec<TrackPoint>,
}

impl Track {
    pub fn reference() -> Track {
        let mut points = Vec::new();
        let (mut x, mut y, mut heading) = (0.0_f64, 0.0_f64, 0.0_f64);
        for segment in LAYOUT {
            let (length, radius, sign) = match segment {
                Segment::Straight(length) => (length, None, 0.0),
                Segment::Corner(radius, degrees) => (radius * degrees.abs().to_radians(), Some(radius), degrees.signum()),
            };
            let steps = (length / GRID_M).round() as usize;
            for _ in 0..steps {
                points.push(TrackPoint { x, y, z: 0.0, radius });
                if let Some(r) = radius {
                    heading += sign * GRID_M / r;
                }
                x += heading.cos() * GRID_M;
                y += heading.sin() * GRID_M;
            }
        }
        // Close the loop: spread the small end-point error along the lap.
        let n = points.len() as f64;
        for (i, p) in points.iter_mut().enumerate() {
            let f = i as f64 / n;
            p.x -= x * f;
            p.y -= y * f;
            p.z = 4.0 * (2.0 * std::f64::consts::PI * f).sin();
        }
        Track { points }
    }

    pub fn length(&self) -> f64 {
        self.points.len() as f64 * GRID_M
    }

    pub fn in_drs_zone(&self, distance: f64) -> bool {
        DRS_ZONES.iter().any(|(a, b)| distance >= *a && distance < *b)
    }
}

/// A car's lap: speed, braking and throttle at every metre and the time it gets there.
#[derive(Clone, Debug)]
pub struct LapProfile {
    /// m/s at each grid point.
    pub speed: Vec<f64>,
    /// Seconds from the lap start to each grid point.
    pub time: Vec<f64>,
    pub braking: Vec<bool>,
    pub throttle: Vec<f64>,
    pub lap_time: f64,
}

impl LapProfile {
    /// The lap of a car whose grip and power are scaled by `pace` (1.0 = reference car).
    pub fn new(track: &Track, pace: f64) -> LapProfile {
        let top = TOP_SPEED * pace;
        let n = track.points.len();
        let limit: Vec<f64> = track
            .points
            .iter()
            .map(|p| match p.radius {
                None => top,
                Some(r) => {
                    let denominator = 1.0 - GRIP_AERO * pace * r / (top * top);
                    if denominator <= 0.0 {
                        top
                    } else {
                        (GRIP_BASE * pace * r / denominator).sqrt().min(top)
                    }
                }
            })
            .collect();
        let mut forward = limit.clone();
        // Two laps around so the profile is periodic (the start line is mid-straight).
        for i in 1..2 * n {
            let (prev, cur) = ((i - 1) % n, i % n);
            let v = forward[prev];
            let accel = ACCEL_MAX * pace * (1.0 - (v / top).powi(2)).max(0.0);
            forward[cur] = limit[cur].min((v * v + 2.0 * accel * GRID_M).sqrt());
        }
        let mut speed = forward.clone();
        for i in (0..2 * n).rev() {
            let (cur, next) = (i % n, (i + 1) % n);
            speed[cur] = speed[cur].min((speed[next] * speed[next] + 2.0 * BRAKE_DECEL * GRID_M).sqrt());
        }
        let braking: Vec<bool> = (0..n).map(|i| speed[i] < forward[i] - 0.05).collect();
        let throttle: Vec<f64> = (0..n)
            .map(|i| {
                if braking[i] {
                    0.0
                } else if track.points[i].radius.is_some() && speed[i] >= limit[i] - 0.05 && limit[i] < top {
                    (55.0 + 40.0 * speed[i] / top).min(95.0)
                } else {
                    100.0
                }
            })
            .collect();
        let mut time = vec![0.0; n];
        for i in 1..n {
            time[i] = time[i - 1] + 2.0 * GRID_M / (speed[i - 1] + speed[i]);
        }
        let lap_time = time[n - 1] + 2.0 * GRID_M / (speed[n - 1] + speed[0]);
        LapProfile { speed, time, braking, throttle, lap_time }
    }

    /// Grid index reached `seconds` into the lap.
    pub fn index_at(&self, seconds: f64) -> usize {
        self.time.partition_point(|t| *t <= seconds).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_lap_looks_like_formula_one() {
        let track = Track::reference();
        let lap = LapProfile::new(&track, 1.0);
        let kmh: Vec<f64> = lap.speed.iter().map(|v| v * 3.6).collect();
        let max = kmh.iter().cloned().fold(0.0, f64::max);
        let min = kmh.iter().cloned().fold(f64::MAX, f64::min);
        assert!((4_500.0..5_500.0).contains(&track.length()), "length {}", track.length());
        assert!((290.0..335.0).contains(&max), "top speed {max}");
        assert!((70.0..110.0).contains(&min), "slowest corner {min}");
        assert!((65.0..100.0).contains(&lap.lap_time), "lap time {}", lap.lap_time);
        assert!(lap.braking.iter().filter(|b| **b).count() > 300, "has braking zones");
    }
}
