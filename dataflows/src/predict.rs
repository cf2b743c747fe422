//! Telemetry predictions: each closed sliding window of a driver goes through a tabular model
//! (batched by [`infer_batched`]); each result is a [`Prediction`] for `f1-predictions`, keyed by
//! model type.

use timely::dataflow::operators::vec::Map;
use timely::dataflow::Stream;

use crate::infer::{infer_batched, BatchModel, Batching, InferStats};
use crate::records::{EventTime, WindowKind, WindowResult};

/// The features a window model reads, in this order (see `models/make_pace_model.py`).
pub const WINDOW_FEATURES: [&str; 8] =
    ["speed_mean", "speed_min", "speed_max", "rpm_mean", "throttle_mean", "brake_pct", "gear_changes", "drs_open_frac"];

/// A sliding window's features for [`WINDOW_FEATURES`].
pub fn window_features(window: &WindowResult) -> [f32; 8] {
    let length = window.end_ms.saturating_sub(window.start_ms).max(1) as f64;
    [
        window.speed.mean,
        window.speed.min,
        window.speed.max,
        window.rpm.mean,
        window.throttle.mean,
        window.brake_pct,
        window.gear_changes as f64,
        window.drs_open_ms as f64 / length,
    ]
    .map(|v| v as f32)
}

/// One model output for one driver window; published to `f1-predictions`, keyed by `model_type`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// What is predicted, e.g. `pace_next5s`: the key and so the partition.
    pub model_type: String,
    /// Model file name and its ONNX `model_version`.
    pub model: String,
    pub model_version: i64,
    pub driver: String,
    pub window_start_ms: EventTime,
    pub window_end_ms: EventTime,
    pub value: f64,
    pub unit: String,
}

/// What the model is, for the records.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    pub model_type: String,
    pub model: String,
    pub version: i64,
    pub unit: String,
}

/// Runs `model` over the sliding windows of `windows` (lap and sector windows are skipped).
/// Windows whose model run failed or gave a non-finite value produce no prediction and are
/// counted in the stats' `failed_items`.
pub fn predict_windows<'s, M>(
    windows: Stream<'s, EventTime, Vec<WindowResult>>,
    model: M,
    card: ModelCard,
    batching: Batching,
) -> (Stream<'s, EventTime, Vec<Prediction>>, InferStats)
where
    M: BatchModel<Item = WindowResult, Output = f32>,
{
    let sliding = windows.flat_map(|w: WindowResult| (w.window == WindowKind::Sliding).then_some(w));
    let (inferred, stats) = infer_batched(sliding, "PredictWindows", model, batching);
    let (failed, last_error) = (stats.failed_items.clone(), stats.last_error.clone());
    let predictions = inferred.flat_map(move |(window, result)| match result {
        Some(Ok(value)) if value.is_finite() => Some(Prediction {
            model_type: card.model_type.clone(),
            model: card.model.clone(),
            model_version: card.version,
            driver: window.driver,
            window_start_ms: window.start_ms,
            window_end_ms: window.end_ms,
            value: f64::from(value),
            unit: card.unit.clone(),
        }),
        Some(Ok(value)) => {
            failed.set(failed.get() + 1);
            *last_error.borrow_mut() = Some(format!("the model gave {value} for the window of {} ending at {} ms", window.driver, window.end_ms));
            None
        }
        _ => None,
    });
    (predictions, stats)
}
