//! The video job, wired: Kafka source -> video dataflow -> Kafka sinks and object storage, on
//! every timely worker, in its own timely dataflow beside the telemetry one.
//!
//! ```text
//!  video-frames ──KafkaSource──┬─ok─► exchange(video id) ─► FireModel (ONNX, batched) ─┬─► fire-detections
//!   (assign p % W == w)        │                                                      └─► AssembleVideos (overlay, H.264)
//!                              │                                                             └─► UploadVideos (S3 / folder) ─► video-completions
//!                              ├─late frames ──► pitwall-late
//!                              └─dead letters (truncated/corrupt records) ──► pitwall-dlq
//!  probe after all sinks ──► source commits offsets; a video's frames stay uncommitted until it is stored
//! ```

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pitwall_connectors::kafka::metrics::SourceMetrics;
use pitwall_connectors::kafka::sink::{publish, publish_rejects, KafkaProducer, RejectSinks, Route, SinkHandle};
use pitwall_connectors::kafka::source::{kafka_source, split_events, SourceConfig, SourceHandle, SplitEvents, WatermarkBoard};
use pitwall_connectors::onnx::fire::{FireDetector, FireModelKind, FireOptions};
use pitwall_connectors::onnx::tabular::WindowModel;
use pitwall_connectors::onnx::{init_runtime, ModelSource, BUILTIN_FIRE_MODEL, BUILTIN_PACE_MODEL};
use pitwall_connectors::store::{upload_videos, ObjectStore, S3Settings, UploadPolicy, UploadStats};
use pitwall_connectors::video::encode::{EncodeOptions, Mp4Spool};
use pitwall_dataflows::infer::{Batching, InferStats};
use pitwall_dataflows::live::{feed, LiveStore};
use pitwall_dataflows::restart::drop_delivered;
use pitwall_dataflows::video::assemble::{AssemblyConfig, FinishedVideo, VideoCompletion};
use pitwall_dataflows::video::detect::{FireDetection, YoloDecode};
use pitwall_dataflows::video::frame::decode_video_record;
use pitwall_dataflows::video::overlay::OverlayStyle;
use pitwall_dataflows::video::pipeline::{video_dataflow, VideoConfig};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::cli::{DataflowArgs, FireModelKindArg, ModelArgs};

/// The fire model the flags choose.
pub fn fire_source(models: &ModelArgs) -> ModelSource {
    models.fire_model.clone().map(ModelSource::File).unwrap_or(BUILTIN_FIRE_MODEL)
}

/// The telemetry model the flags choose.
pub fn predictions_source(models: &ModelArgs) -> ModelSource {
    models.predictions_model.clone().map(ModelSource::File).unwrap_or(BUILTIN_PACE_MODEL)
}

pub fn fire_options(models: &ModelArgs) -> FireOptions {
    FireOptions {
        kind: match models.fire_model_kind {
            FireModelKindArg::Heatmap => FireModelKind::Heatmap,
            FireModelKindArg::Yolo => FireModelKind::Yolo,
        },
        width: models.model_input.0,
        height: models.model_input.1,
        intra_threads: models.intra_threads,
        yolo: YoloDecode { classes: models.fire_classes.clone(), scores: models.fire_scores, ..YoloDecode::default() },
        ..FireOptions::default()
    }
}

pub fn batching(models: &ModelArgs) -> Batching {
    Batching { max_batch: models.infer_batch.max(1), max_wait: Duration::from_millis(models.infer_wait_ms) }
}

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

/// Where overlayed videos are stored: S3 when a bucket is set, else the local folder.
pub fn open_store(models: &ModelArgs) -> Result<Arc<ObjectStore>> {
    let store = match &models.s3_bucket {
        Some(bucket) if !bucket.is_empty() => {
            let settings = S3Settings {
                bucket: bucket.clone(),
                endpoint: models.s3_endpoint.clone(),
                region: models.s3_region.clone(),
                access_key: models.s3_access_key.clone(),
                secret_key: models.s3_secret_key.clone(),
                path_style: models.s3_endpoint.is_some(),
            };
            let policy = UploadPolicy { multipart_threshold: models.s3_multipart_mib.max(5) << 20, ..UploadPolicy::default() };
            ObjectStore::s3(&settings, policy).with_context(|| format!("opening {settings:?}"))?
        }
        _ => ObjectStore::local(&models.video_out)?,
    };
    Ok(Arc::new(store))
}

/// The spool folder videos are encoded into before they are stored.
pub fn spool_dir(models: &ModelArgs) -> PathBuf {
    models.spool.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("pitwall-spool-{}", std::process::id())))
}

/// One worker's video dataflow, built.
pub struct VideoParts {
    pub probe: ProbeHandle<u64>,
    pub source: SourceHandle,
    /// detections, completions, dead letters, late frames.
    pub sinks: Vec<(&'static str, SinkHandle)>,
    pub inference: InferStats,
    pub uploads: UploadStats,
    /// Finished videos not stored again after a crash (stored before it).
    pub stored_before: Rc<Cell<u64>>,
}

/// What the video side of one worker did.
#[derive(Clone, Debug, Default)]
pub struct VideoReport {
    pub frames: u64,
    pub detections: u64,
    pub videos: u64,
    pub dead_letters: u64,
    pub stored: u64,
    pub store_failures: u64,
}

impl VideoParts {
    pub fn report(&self) -> VideoReport {
        use std::sync::atomic::Ordering::Relaxed;
        VideoReport {
            frames: self.inference.items.get(),
            detections: self.sinks[0].1.delivered(),
            videos: self.sinks[1].1.delivered(),
            dead_letters: self.sinks[2].1.delivered(),
            stored: self.uploads.stored.load(Relaxed),
            store_failures: self.uploads.failed.load(Relaxed),
        }
    }
}

/// Everything the video side needs from the job's settings.
pub struct VideoSettings<'a> {
    pub kafka: &'a pitwall_connectors::kafka::KafkaConfig,
    pub dataflow: &'a DataflowArgs,
    pub models: &'a ModelArgs,
    pub exit_at_end: bool,
    pub store: Arc<ObjectStore>,
    pub metrics: Option<SourceMetrics>,
    /// The bridge's live view, fed with detections and completions (with a bridge only).
    pub live: Option<LiveStore>,
    /// The video topic's watermark board (see `SourceConfig::board`).
    pub board: WatermarkBoard,
    /// `pitwall_operator_records_total`.
    pub operator_records: prometheus::IntCounterVec,
}

/// Builds the video dataflow on this worker.
pub fn build_video(
    worker: &mut timely::worker::Worker,
    settings: &VideoSettings<'_>,
    producer: &KafkaProducer,
    shutdown: Arc<AtomicBool>,
) -> Result<VideoParts> {
    let models = settings.models;
    let args = settings.dataflow;
    let detector = FireDetector::load(&fire_source(models), fire_options(models))?;
    let config = VideoConfig {
        batching: batching(models),
        assembly: AssemblyConfig {
            overlay: OverlayStyle::default(),
            fire_threshold: models.fire_threshold,
            idle_timeout: Duration::from_secs(models.video_idle_s),
        },
        model_name: detector.name().to_string(),
    };
    let spool = Mp4Spool { dir: spool_dir(models).join(format!("worker-{}", worker.index())), options: EncodeOptions::default() };
    let mut source = SourceConfig::new(settings.kafka.clone(), &models.video_topic);
    source.group = models.video_group.clone();
    source.allowed_lateness_ms = models.video_lateness_ms;
    args.apply_source_timing(&mut source);
    // Frames are large: read fewer per activation so inference starts sooner.
    source.max_batch = 64;
    source.metrics = settings.metrics.clone();
    source.exit_at_end = settings.exit_at_end;
    source.board = Some(settings.board.clone());
    let probe = ProbeHandle::new();
    let store = settings.store.clone();
    worker.dataflow::<u64, _, _>(|scope| -> Result<VideoParts> {
        let decode = |_at, key: Option<&[u8]>, payload: &[u8]| {
            decode_video_record(key, payload).map(|record| (record.header().produced_at_ms, record)).map_err(|e| e.to_string())
        };
        let (events, handle) = kafka_source(scope, source, decode, probe.clone(), shutdown)?;
        let SplitEvents { records, late, dead } = split_events(events);
        let mut outputs = video_dataflow(records, detector, spool, &config);
        // After a crash: a video whose first replayed frame is before its partition's mark had
        // been stored and announced (the assembly holds the probe at a video's first frame until
        // then). Whole or, when the replay began inside it, partial: it is not stored again (a
        // partial one would overwrite the stored video with its tail). Its frames' detections
        // are still published (at least once). The commit rule puts a partially replayed
        // video's first replayed frame before the mark (`connectors/src/kafka/resume.rs`).
        let key_mark = handle.key_marks();
        let (finished, stored_before) = drop_delivered(
            outputs.finished,
            "VideosDelivered",
            move |v: &FinishedVideo| key_mark(v.completion.video_id.as_bytes()),
            |v: &FinishedVideo| {
                tracing::info!(video = %v.completion.video_id, "stored before the crash; the replayed copy is not stored again");
                if let Some(file) = &v.file {
                    let _ = std::fs::remove_file(&file.path);
                }
            },
        );
        let (mut completions, uploads) = upload_videos(finished, store);
        // The same operators with or without a live view (one dataflow shape across processes).
        let (for_detections, for_completions, for_frames) = (settings.live.clone(), settings.live.clone(), settings.live.clone());
        let (detections_out, completions_out) = (
            settings.operator_records.with_label_values(&["fire_model", "out"]),
            settings.operator_records.with_label_values(&["assemble_videos", "out"]),
        );
        outputs.detections = feed(outputs.detections, move |batch: &[FireDetection]| {
            detections_out.inc_by(batch.len() as u64);
            if let Some(live) = &for_detections {
                live.push_detections(batch);
            }
        });
        completions = feed(completions, move |batch: &[VideoCompletion]| {
            completions_out.inc_by(batch.len() as u64);
            if let Some(live) = &for_completions {
                live.push_completions(batch);
            }
        });
        // A thumbnail every 5th frame (5 a second at 25 fps) for the dashboard.
        feed(outputs.frames, move |batch| {
            if let Some(live) = &for_frames {
                live.push_frames(batch, 5);
            }
        });
        let topic = models.detections_topic.clone();
        let (detections_done, detections) = publish(outputs.detections, producer, "DetectionSink", move |d: &FireDetection| Route {
            topic: topic.clone(),
            key: Some(d.video_id.clone()),
            partition: None,
        });
        let topic = models.completions_topic.clone();
        let (completions_done, completions) = publish(completions, producer, "CompletionSink", move |c: &VideoCompletion| Route {
            topic: topic.clone(),
            key: Some(c.video_id.clone()),
            partition: None,
        });
        let RejectSinks { dead: (dead_done, dead_letters), late: (late_done, late_sink) } =
            publish_rejects(dead, late, producer, &args.dlq_topic, &args.late_topic, "Video");
        detections_done.probe_with(&probe);
        completions_done.probe_with(&probe);
        dead_done.probe_with(&probe);
        late_done.probe_with(&probe);
        Ok(VideoParts {
            probe: probe.clone(),
            source: handle,
            sinks: vec![("detections", detections), ("completions", completions), ("video_dead_letters", dead_letters), ("video_late", late_sink)],
            inference: outputs.inference,
            uploads,
            stored_before,
        })
    })
}
