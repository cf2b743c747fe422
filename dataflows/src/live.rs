//! The bridge's live view: bounded rolling buffers of what the dataflows produce (samples and
//! window results per driver, alerts, fire detections, video completions), fed by the workers
//! as batches pass, and read by the HTTP bridge as plain records: time series down-sampled to
//! what a panel asks for, alerts and completions in a range, the dashboard's view. How they are
//! put on the wire (Grafana's tables, the dashboard's JSON) is `connectors/src/bridge/`'s.
//!
//! Time is Unix epoch milliseconds (what Grafana sends and charts), by [`LiveClock`]: with
//! `Wall`, a sample is charted when it was produced (`produced_at_ms`: a live replay appears now,
//! at wall-clock time); with `Session`, at its `Date` when it has one, else its `SessionTime`.
//! A window's end and an alert's time (session times) are mapped the same way, through the
//! driver's samples. The session's own time stays in every record and is a series of its own
//! (`<driver>:session_time`, seconds), so it can be charted against wall time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use timely::dataflow::operators::core::Inspect;
use timely::dataflow::Stream;

use crate::records::{now_ms, Alert, AnomalyKind, EventTime, Sample, Severity, SmolStr, WindowKind, WindowResult};
use crate::video::assemble::VideoCompletion;
use crate::video::detect::FireDetection;

/// How much the live view keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// Samples kept per driver, and sliding-window results kept per driver.
    pub points_per_driver: usize,
    /// Alerts, fire detections and completions kept (each).
    pub events: usize,
    /// Which time samples, windows and alerts are charted at.
    pub clock: LiveClock,
}

/// The time the live view charts telemetry at (`--bridge-time`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LiveClock {
    /// When the sample was produced (wall clock, `produced_at_ms`), for samples that carry it;
    /// others as `session`.
    Wall,
    /// The session's `Date` (or its `SessionTime` plus the driver's `Date - SessionTime`).
    #[default]
    Session,
}

/// Samples and sliding-window results kept per driver unless configured (`--bridge-points`).
pub const DEFAULT_POINTS_PER_DRIVER: usize = 60_000;

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig { points_per_driver: DEFAULT_POINTS_PER_DRIVER, events: 10_000, clock: LiveClock::Session }
    }
}

/// Sample channels a target can name: `<driver>:<channel>` (`session_time`: the sample's
/// `SessionTime` in seconds).
pub const SAMPLE_CHANNELS: [&str; 7] = ["speed", "rpm", "throttle", "gear", "brake", "drs_open", "session_time"];
/// Table targets.
pub const TABLES: [&str; 2] = ["alerts", "video_completions"];

/// A point at epoch ms `t`: a sample's channels or a window's metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point<const N: usize> {
    t: i64,
    values: [f32; N],
}

/// What a query asked for that the view cannot answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LiveError {
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    #[error("the range starts ({from}) after it ends ({to})")]
    InvertedRange { from: i64, to: i64 },
    #[error("maxDataPoints must be 1..={max}, got {got}")]
    MaxDataPoints { got: u64, max: u64 },
}

/// The most points one series may be asked for.
pub const MAX_DATA_POINTS: u64 = 100_000;

/// Where a car is and what it does, as of its newest sample.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CarState {
    pub driver: SmolStr,
    pub time_ms: i64,
    pub lap: Option<u32>,
    pub x: f64,
    pub y: f64,
    pub speed: f64,
    pub rpm: f64,
    pub throttle: f64,
    pub gear: u8,
    pub brake: bool,
}

/// A small overlayed frame of a video, the newest one kept per video.
#[derive(Clone, Debug, PartialEq)]
pub struct Thumbnail {
    pub video_id: String,
    pub frame_index: u64,
    pub score: f32,
    pub image: crate::video::frame::RgbImage,
}

/// What the dashboard shows, as of one moment (see [`LiveStore::dashboard_view`]); the bridge
/// formats it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DashboardView {
    pub cars: Vec<CarState>,
    /// The track outline: `(x, y)` points of the first driver's path.
    pub track: Vec<(f32, f32)>,
    /// Per driver, the newest `(epoch ms, speed)` points, oldest first.
    pub traces: BTreeMap<SmolStr, Vec<(i64, f64)>>,
    /// The newest alerts with their epoch ms, newest first.
    pub alerts: Vec<(i64, Alert)>,
    /// Videos with a thumbnail: `(video id, frame index, score)`.
    pub videos: Vec<(String, u64, f32)>,
    /// The newest completions with their epoch ms, newest first.
    pub completions: Vec<(i64, VideoCompletion)>,
}

/// Width of the dashboard's thumbnails.
pub const THUMBNAIL_WIDTH: u32 = 160;
/// Points of the track outline kept (the first driver's path, thinned).
const TRACK_POINTS: usize = 4_000;

#[derive(Default)]
struct Live {
    cars: BTreeMap<SmolStr, CarState>,
    track: Vec<(f32, f32)>,
    track_driver: Option<SmolStr>,
    thumbnails: BTreeMap<String, Thumbnail>,
    samples: HashMap<SmolStr, VecDeque<Point<7>>>,
    windows: HashMap<String, VecDeque<Point<6>>>,
    /// Per driver, `Date - SessionTime` in ms.
    offsets: HashMap<SmolStr, i64>,
    /// Per driver with [`LiveClock::Wall`]: session ms -> the epoch ms its sample was produced
    /// at (as many as samples are kept), to place windows and alerts.
    produced: HashMap<SmolStr, BTreeMap<u64, i64>>,
    alerts: VecDeque<(i64, Alert)>,
    detections: VecDeque<FireDetection>,
    completions: VecDeque<(i64, VideoCompletion)>,
}

/// A cheap handle on the shared view; clone it into every worker and the bridge.
#[derive(Clone, Default)]
pub struct LiveStore {
    inner: Arc<RwLock<Live>>,
    config: LiveConfig,
}

impl Live {
    /// Where a driver's session time `session_ms` is charted: next to the driver's sample at or
    /// before it (after it, when none is before) when samples carry production times, else with
    /// the driver's `Date - SessionTime` offset.
    fn chart_time(&self, driver: &str, session_ms: u64) -> i64 {
        if let Some(clock) = self.produced.get(driver) {
            let near = clock.range(..=session_ms).next_back().or_else(|| clock.range(session_ms..).next());
            if let Some((at, produced)) = near {
                return produced.saturating_add(session_ms as i64 - *at as i64);
            }
        }
        (session_ms as i64).saturating_add(self.offsets.get(driver).copied().unwrap_or(0))
    }
}

/// The `(time, value of channel index)` points of `buffer` within `[from, to]`; `None` when
/// there is no such buffer or channel.
fn in_range<const N: usize>(buffer: Option<&VecDeque<Point<N>>>, index: Option<usize>, from: i64, to: i64) -> Option<Vec<(i64, f64)>> {
    let (buffer, index) = (buffer?, index?);
    let start = buffer.partition_point(|p| p.t < from);
    Some(buffer.range(start..).take_while(|p| p.t <= to).map(|p| (p.t, f64::from(p.values[index]))).collect())
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, bound: usize) {
    if queue.len() >= bound.max(1) {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl LiveStore {
    pub fn new(config: LiveConfig) -> LiveStore {
        LiveStore { inner: Arc::default(), config }
    }

    pub fn config(&self) -> LiveConfig {
        self.config
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a batch of samples (one lock per batch).
    pub fn push_samples<'a>(&self, samples: impl IntoIterator<Item = &'a Sample>) {
        let bound = self.config.points_per_driver;
        let wall = self.config.clock == LiveClock::Wall;
        let mut live = self.write();
        for sample in samples {
            let r = &sample.record;
            let session = r.session_time_ms as i64;
            let dated = match r.date_ms {
                Some(date) => {
                    live.offsets.insert(r.driver.clone(), date - session);
                    date
                }
                None => session + live.offsets.get(&r.driver).copied().unwrap_or(0),
            };
            let t = match r.produced_at_ms.filter(|_| wall) {
                Some(produced) => {
                    let produced = i64::try_from(produced).unwrap_or(i64::MAX);
                    let clock = live.produced.entry(r.driver.clone()).or_default();
                    clock.insert(r.session_time_ms, produced);
                    if clock.len() > bound.max(1) {
                        clock.pop_first();
                    }
                    produced
                }
                None => dated,
            };
            let values = [
                r.speed as f32,
                r.rpm as f32,
                r.throttle as f32,
                f32::from(r.gear),
                f32::from(u8::from(r.brake)),
                f32::from(u8::from(r.drs_open())),
                (r.session_time_ms as f64 / 1_000.0) as f32,
            ];
            if live.cars.get(&r.driver).is_none_or(|c| c.time_ms <= t) {
                let car = CarState {
                    driver: r.driver.clone(),
                    time_ms: t,
                    lap: r.lap,
                    x: r.x,
                    y: r.y,
                    speed: r.speed,
                    rpm: r.rpm,
                    throttle: r.throttle,
                    gear: r.gear,
                    brake: r.brake,
                };
                live.cars.insert(r.driver.clone(), car);
            }
            // The track outline: the path of the first driver seen, one sample in four.
            if live.track_driver.is_none() {
                live.track_driver = Some(r.driver.clone());
            }
            if live.track_driver.as_deref() == Some(r.driver.as_str()) && live.track.len() < TRACK_POINTS && sample.at.offset % 4 == 0 {
                live.track.push((r.x as f32, r.y as f32));
            }
            let queue = live.samples.entry(r.driver.clone()).or_default();
            // Out-of-order samples keep the buffer sorted by going to their place.
            if queue.back().is_some_and(|p| p.t > t) {
                let at = queue.partition_point(|p| p.t <= t);
                queue.insert(at, Point { t, values });
                if queue.len() > bound.max(1) {
                    queue.pop_front();
                }
            } else {
                push_bounded(queue, Point { t, values }, bound);
            }
        }
    }

    /// Adds a batch of window results (sliding windows become points at their end).
    pub fn push_windows<'a>(&self, windows: impl IntoIterator<Item = &'a WindowResult>) {
        let bound = self.config.points_per_driver;
        let mut live = self.write();
        for w in windows.into_iter().filter(|w| w.window == WindowKind::Sliding) {
            let t = live.chart_time(w.driver.as_str(), w.end_ms);
            let values = w.metric_values().map(|v| v as f32);
            let queue = live.windows.entry(w.driver.clone()).or_default();
            let at = queue.partition_point(|p| p.t <= t);
            queue.insert(at, Point { t, values });
            if queue.len() > bound.max(1) {
                queue.pop_front();
            }
        }
    }

    pub fn push_alerts<'a>(&self, alerts: impl IntoIterator<Item = &'a Alert>) {
        let bound = self.config.events;
        let mut live = self.write();
        for alert in alerts {
            let t = live.chart_time(alert.driver.as_str(), alert.session_time_ms);
            push_bounded(&mut live.alerts, (t, alert.clone()), bound);
        }
    }

    pub fn push_detections<'a>(&self, detections: impl IntoIterator<Item = &'a FireDetection>) {
        let bound = self.config.events;
        let mut live = self.write();
        for d in detections {
            push_bounded(&mut live.detections, d.clone(), bound);
        }
    }

    pub fn push_completions<'a>(&self, completions: impl IntoIterator<Item = &'a VideoCompletion>) {
        let bound = self.config.events;
        let mut live = self.write();
        for c in completions {
            push_bounded(&mut live.completions, (now_ms() as i64, c.clone()), bound);
        }
    }

    /// Keeps a small overlayed copy of the newest frame of each video (one in `every` frames).
    pub fn push_frames<'a>(&self, frames: impl IntoIterator<Item = &'a crate::video::assemble::InferredFrame>, every: u64) {
        use crate::video::frame::VideoRecord;
        use crate::video::overlay::{overlay_heatmap, thumbnail, OverlayStyle};
        let mut made = Vec::new();
        for (record, verdict) in frames {
            let (VideoRecord::Frame { header, image }, Some(Ok(verdict))) = (&**record, verdict) else { continue };
            if header.frame_index % every.max(1) != 0 {
                continue;
            }
            let mut small = thumbnail(image, THUMBNAIL_WIDTH);
            if let Some(heat) = &verdict.heatmap {
                overlay_heatmap(&mut small, heat, OverlayStyle::default());
            }
            made.push(Thumbnail { video_id: header.video_id.clone(), frame_index: header.frame_index, score: verdict.score, image: small });
        }
        if made.is_empty() {
            return;
        }
        let mut live = self.write();
        for t in made {
            live.thumbnails.insert(t.video_id.clone(), t);
        }
        while live.thumbnails.len() > self.config.events.max(1) {
            let oldest = live.thumbnails.keys().next().cloned().expect("not empty");
            live.thumbnails.remove(&oldest);
        }
    }

    /// The newest thumbnail of a video.
    pub fn thumbnail(&self, video_id: &str) -> Option<Thumbnail> {
        self.read().thumbnails.get(video_id).cloned()
    }

    /// What the live dashboard shows: every car's newest state, the track outline, the last
    /// `trace` speed points per driver, the newest `recent` alerts and completions (newest
    /// first), and the videos with a thumbnail.
    pub fn dashboard_view(&self, trace: usize, recent: usize) -> DashboardView {
        let live = self.read();
        DashboardView {
            cars: live.cars.values().cloned().collect(),
            track: live.track.clone(),
            traces: live
                .samples
                .iter()
                .map(|(d, q)| (d.clone(), q.iter().rev().take(trace).rev().map(|p| (p.t, f64::from(p.values[0]))).collect()))
                .collect(),
            alerts: live.alerts.iter().rev().take(recent).cloned().collect(),
            videos: live.thumbnails.values().map(|t| (t.video_id.clone(), t.frame_index, t.score)).collect(),
            completions: live.completions.iter().rev().take(recent).cloned().collect(),
        }
    }

    /// Every target a query may name, sorted; with `filter`, those containing it.
    pub fn targets(&self, filter: &str) -> Vec<String> {
        let live = self.read();
        let mut out: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        for driver in live.samples.keys() {
            out.extend(SAMPLE_CHANNELS.iter().map(|c| format!("{driver}:{c}")));
        }
        for driver in live.windows.keys() {
            out.extend(WindowResult::METRICS.iter().map(|m| format!("{driver}:window.{m}")));
        }
        let videos: std::collections::BTreeSet<&str> = live.detections.iter().map(|d| d.video_id.as_str()).collect();
        out.extend(videos.into_iter().map(|v| format!("video:{v}:fire_score")));
        out.retain(|t| t.contains(filter));
        out.sort();
        out.dedup();
        out
    }

    /// The values of one tag (`driver`, `video`, `kind`, `severity`), sorted: for Grafana's
    /// template variables and ad hoc filters.
    pub fn tag_values(&self, key: &str) -> Vec<String> {
        let live = self.read();
        let mut out: Vec<String> = match key {
            "driver" => live
                .samples
                .keys()
                .map(SmolStr::to_string)
                .chain(live.windows.keys().cloned())
                .chain(live.alerts.iter().map(|(_, a)| a.driver.clone()))
                .collect(),
            "video" => live.detections.iter().map(|d| d.video_id.clone()).collect(),
            "kind" => AnomalyKind::ALL.iter().map(|k| k.name().to_string()).collect(),
            "severity" => Severity::ALL.iter().map(|s| s.name().to_string()).collect(),
            _ => Vec::new(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// The time series of `target` within `[from, to]` (epoch ms), at most `max_points` points:
    /// when there are more, the range is cut into `max_points` equal buckets and each non-empty
    /// bucket gives the mean of its values at the mean of its times. `[[value, time_ms], ...]`.
    pub fn series(&self, target: &str, from: i64, to: i64, max_points: u64) -> Result<Vec<[f64; 2]>, LiveError> {
        check_range(from, to, max_points)?;
        let live = self.read();
        let points: Vec<(i64, f64)> = if let Some(rest) = target.strip_prefix("video:") {
            let video = rest.strip_suffix(":fire_score").ok_or_else(|| LiveError::UnknownTarget(target.into()))?;
            let mut points: Vec<(i64, f64)> =
                live.detections.iter().filter(|d| d.video_id == video).filter_map(|d| Some((d.pts_ms, f64::from(d.score?)))).collect();
            if points.is_empty() {
                return Err(LiveError::UnknownTarget(target.into()));
            }
            // A video's own timeline (pts) is placed to end now.
            points.sort_by_key(|(t, _)| *t);
            let shift = now_ms() as i64 - points.last().map(|(t, _)| *t).unwrap_or(0);
            points.into_iter().map(|(t, v)| (t + shift, v)).filter(|(t, _)| (from..=to).contains(t)).collect()
        } else {
            let (driver, metric) = target.split_once(':').ok_or_else(|| LiveError::UnknownTarget(target.into()))?;
            let unknown = || LiveError::UnknownTarget(target.into());
            match metric.strip_prefix("window.") {
                Some(m) => in_range(live.windows.get(driver), WindowResult::METRICS.iter().position(|x| *x == m), from, to).ok_or_else(unknown)?,
                None => in_range(live.samples.get(driver), SAMPLE_CHANNELS.iter().position(|x| *x == metric), from, to).ok_or_else(unknown)?,
            }
        };
        Ok(downsample(&points, from, to, max_points))
    }

    /// Completed videos announced within `[from, to]` (epoch ms of their announcement), oldest first.
    pub fn completions(&self, from: i64, to: i64) -> Result<Vec<(i64, VideoCompletion)>, LiveError> {
        check_range(from, to, 1)?;
        Ok(self.read().completions.iter().filter(|(t, _)| (from..=to).contains(t)).cloned().collect())
    }

    /// Alerts within `[from, to]` whose driver, kind or severity equals `query` (all when empty),
    /// oldest first: Grafana annotations.
    pub fn alerts(&self, from: i64, to: i64, query: &str) -> Result<Vec<(i64, Alert)>, LiveError> {
        check_range(from, to, 1)?;
        let query = query.trim();
        let live = self.read();
        Ok(live
            .alerts
            .iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .filter(|(_, a)| query.is_empty() || a.driver == query || a.kind.name() == query || a.severity.name().eq_ignore_ascii_case(query))
            .cloned()
            .collect())
    }

    /// Points held, per buffer kind: for the README's memory bound and the metrics.
    pub fn sizes(&self) -> BTreeMap<&'static str, usize> {
        let live = self.read();
        BTreeMap::from([
            ("samples", live.samples.values().map(VecDeque::len).sum()),
            ("windows", live.windows.values().map(VecDeque::len).sum()),
            ("alerts", live.alerts.len()),
            ("detections", live.detections.len()),
            ("completions", live.completions.len()),
        ])
    }
}

/// Passes `stream` through unchanged, handing every batch to `push` (one call, so one lock, per
/// batch): how the workers feed the live view.
pub fn feed<'s, D: Clone + 'static>(stream: Stream<'s, EventTime, Vec<D>>, mut push: impl FnMut(&[D]) + 'static) -> Stream<'s, EventTime, Vec<D>> {
    stream.inspect_core(move |event| {
        if let Ok((_, batch)) = event {
            push(batch);
        }
    })
}

fn check_range(from: i64, to: i64, max_points: u64) -> Result<(), LiveError> {
    if from > to {
        return Err(LiveError::InvertedRange { from, to });
    }
    if max_points == 0 || max_points > MAX_DATA_POINTS {
        return Err(LiveError::MaxDataPoints { got: max_points, max: MAX_DATA_POINTS });
    }
    Ok(())
}

/// See [`LiveStore::series`]. `points` are sorted by time and within `[from, to]`.
fn downsample(points: &[(i64, f64)], from: i64, to: i64, max_points: u64) -> Vec<[f64; 2]> {
    if points.len() as u64 <= max_points {
        return points.iter().map(|(t, v)| [*v, *t as f64]).collect();
    }
    let width = ((to - from) as f64 / max_points as f64).max(1.0);
    let mut out = Vec::with_capacity(max_points as usize);
    let mut bucket: Option<(u64, f64, f64, u32)> = None;
    for (t, v) in points {
        let index = (((t - from) as f64 / width) as u64).min(max_points - 1);
        match bucket.as_mut() {
            Some((i, ts, vs, n)) if *i == index => {
                *ts += *t as f64;
                *vs += v;
                *n += 1;
            }
            _ => {
                if let Some((_, ts, vs, n)) = bucket.take() {
                    out.push([vs / f64::from(n), (ts / f64::from(n)).round()]);
                }
                bucket = Some((index, *t as f64, *v, 1));
            }
        }
    }
    if let Some((_, ts, vs, n)) = bucket {
        out.push([vs / f64::from(n), (ts / f64::from(n)).round()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{SourcePosition, TelemetryRecord};

    fn sample(driver: &str, session: u64, speed: f64) -> Sample {
        let record = TelemetryRecord {
            lap: Some(1),
            date_ms: Some(1_000_000 + session as i64),
            rpm: 10_000.0,
            speed,
            ..TelemetryRecord::example(driver, session)
        };
        Sample { at: SourcePosition::default(), record }
    }

    #[test]
    fn series_are_bounded_ranged_and_downsampled_to_the_mean() {
        let store = LiveStore::new(LiveConfig { points_per_driver: 100, events: 10, clock: LiveClock::Session });
        let samples: Vec<Sample> = (0..150).map(|i| sample("VER", i * 10, i as f64)).collect();
        store.push_samples(&samples);
        // Bounded: the oldest 50 are gone.
        let all = store.series("VER:speed", 0, i64::MAX, MAX_DATA_POINTS).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], [50.0, 1_000_500.0]);
        // Range is inclusive, epoch ms from Date.
        let some = store.series("VER:speed", 1_001_000, 1_001_090, 1_000).unwrap();
        assert_eq!(some.iter().map(|p| p[0]).collect::<Vec<_>>(), (100..=109).map(f64::from).collect::<Vec<_>>());
        // 100 points into 10 buckets of 10: each the mean of its values and times.
        let coarse = store.series("VER:speed", 1_000_500, 1_001_499, 10).unwrap();
        assert_eq!(coarse.len(), 10);
        assert_eq!(coarse[0], [54.5, 1_000_545.0]);
        assert_eq!(store.series("VER:drs_open", 1_000_500, 1_001_499, 5).unwrap().iter().map(|p| p[0]).collect::<Vec<_>>(), vec![1.0; 5]);
        // Buckets span the asked range, not the data: a wide range puts everything in one.
        assert_eq!(store.series("VER:speed", 0, i64::MAX / 2, 5).unwrap().len(), 1);
    }

    #[test]
    fn bad_queries_are_errors_not_panics() {
        let store = LiveStore::default();
        store.push_samples(&[sample("HAM", 5, 200.0)]);
        assert_eq!(store.series("HAM:sped", 0, 10, 10), Err(LiveError::UnknownTarget("HAM:sped".into())));
        assert_eq!(store.series("nobody", 0, 10, 10), Err(LiveError::UnknownTarget("nobody".into())));
        assert_eq!(store.series("HAM:speed", 10, 0, 10), Err(LiveError::InvertedRange { from: 10, to: 0 }));
        assert!(matches!(store.series("HAM:speed", 0, 10, 0), Err(LiveError::MaxDataPoints { .. })));
        assert!(matches!(store.series("HAM:speed", 0, 10, 10_000_000), Err(LiveError::MaxDataPoints { .. })));
        assert_eq!(store.targets("HAM:s"), vec!["HAM:session_time".to_string(), "HAM:speed".to_string()]);
        assert!(store.targets("").contains(&"alerts".to_string()));
    }
}
