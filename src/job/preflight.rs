//! What is checked before any worker starts: the flags that make sense only together, the ONNX
//! Runtime library and every model the pipelines need (loaded once), and the topics on the
//! broker. A mistake here is a start-up error with the reason, never a worker's panic.

use anyhow::{bail, Context, Result};
use pitwall_connectors::onnx::fire::FireDetector;
use pitwall_connectors::onnx::init_runtime;
use pitwall_connectors::onnx::tabular::WindowModel;

use super::models::{fire_options, fire_source, predictions_source};
use super::{JobConfig, Pipeline};
use crate::cli::ModelArgs;
use crate::topics::ALERT_PARTITIONS;

/// Loads the runtime and every model the pipelines need once, before any worker starts, so a
/// missing library or a wrong model is a start-up error with the reason.
pub fn check_models(models: &ModelArgs, video: bool, predictions: bool) -> Result<()> {
    if !video && !predictions {
        return Ok(());
    }
    init_runtime(models.onnxruntime.as_deref()).context("loading ONNX Runtime")?;
    if video {
        let source = fire_source(models);
        FireDetector::load(&source, fire_options(models)).with_context(|| format!("loading the fire model {}", source.describe()))?;
    }
    if predictions {
        let source = predictions_source(models);
        WindowModel::load(&source, models.intra_threads).with_context(|| format!("loading the predictions model {}", source.describe()))?;
    }
    Ok(())
}

/// Checks the flags and what the job needs from the broker before any worker starts.
pub fn preflight(config: &JobConfig) -> Result<()> {
    config.bridge.check_exposure()?;
    if config.pipelines.is_empty() {
        bail!("--pipelines is empty: name at least one of telemetry, predictions, video");
    }
    if config.runs(Pipeline::Predictions) && !config.runs(Pipeline::Telemetry) {
        bail!("--pipelines predictions needs telemetry too (predictions are made from its windows)");
    }
    // Checked here, not first in a worker: a bad flag is the user's error, not a worker panic.
    config.dataflow.sliding_windows()?;
    let consumer = config.kafka.plain_consumer(&config.dataflow.group)?;
    let mut topics = vec![&config.dataflow.dlq_topic, &config.dataflow.late_topic];
    if config.runs(Pipeline::Telemetry) {
        // The input first: a missing input topic is the likelier mistake, and names the fix.
        config.kafka.partition_count(&consumer, &config.dataflow.telemetry_topic)?;
        let alerts = config.kafka.partition_count(&consumer, &config.dataflow.alerts_topic)?;
        if alerts < ALERT_PARTITIONS {
            bail!("topic `{}` has {alerts} partitions; alerts need {ALERT_PARTITIONS} (high=0, medium=1, low=2)", config.dataflow.alerts_topic);
        }
        topics.push(&config.dataflow.windows_topic);
    }
    if config.runs(Pipeline::Predictions) {
        topics.push(&config.models.predictions_topic);
    }
    if config.runs(Pipeline::Video) {
        topics.extend([&config.video.video_topic, &config.video.detections_topic, &config.video.completions_topic]);
    }
    for topic in topics {
        config.kafka.partition_count(&consumer, topic)?;
    }
    Ok(())
}
