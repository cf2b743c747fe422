//! The video dataflow of one worker, wired: Kafka source -> video dataflow -> Kafka sinks and
//! object storage, in its own timely dataflow beside the telemetry one.
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
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use pitwall_connectors::kafka::group::Lease;
use pitwall_connectors::kafka::sink::{publish, publish_rejects, KafkaProducer, RejectSinks, Route, SinkHandle};
use pitwall_connectors::kafka::source::{kafka_source, split_events, SourceHandle, SplitEvents};
use pitwall_connectors::onnx::fire::FireDetector;
use pitwall_connectors::store::{upload_videos, ObjectStore, UploadStats};
use pitwall_connectors::video::encode::{EncodeOptions, Mp4Spool};
use pitwall_dataflows::infer::InferStats;
use pitwall_dataflows::live::feed;
use pitwall_dataflows::restart::drop_delivered;
use pitwall_dataflows::video::assemble::{AssemblyConfig, AssemblyState, FinishedVideo, VideoCompletion};
use pitwall_dataflows::video::detect::FireDetection;
use pitwall_dataflows::video::frame::decode_video_record;
use pitwall_dataflows::video::overlay::OverlayStyle;
use pitwall_dataflows::video::pipeline::{video_dataflow, VideoConfig};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use super::models::{batching, fire_options, fire_source, spool_dir};
use super::{count_and_show, source_config, JobConfig, ProcessShared};

/// Most frames one source activation reads: frames are large, and fewer per activation start
/// inference sooner.
const FRAMES_PER_POLL: usize = 64;

/// The dashboard gets a thumbnail of every this many frames (5 a second at 25 fps).
const THUMBNAIL_EVERY: u64 = 5;

/// One worker's video dataflow, built.
pub struct VideoParts {
    pub probe: ProbeHandle<u64>,
    pub source: SourceHandle,
    pub sinks: VideoSinks,
    pub inference: InferStats,
    pub uploads: UploadStats,
    /// What the assembly holds: videos left unfinished once the input ended.
    pub assembly: AssemblyState,
    /// Finished videos not stored again after a crash (stored before it).
    pub stored_before: Rc<Cell<u64>>,
}

/// The video job's sinks, by name.
pub struct VideoSinks {
    pub detections: SinkHandle,
    pub completions: SinkHandle,
    pub dead_letters: SinkHandle,
    pub late: SinkHandle,
}

impl VideoSinks {
    /// Every sink with its metrics label.
    pub fn labelled(&self) -> Vec<(&'static str, SinkHandle)> {
        vec![
            ("detections", self.detections.clone()),
            ("completions", self.completions.clone()),
            ("video_dead_letters", self.dead_letters.clone()),
            ("video_late", self.late.clone()),
        ]
    }
}

/// What the video side of one worker did.
#[derive(Clone, Debug, Default)]
pub struct VideoReport {
    pub frames: u64,
    /// Frames the model gave no verdict for.
    pub unscored: u64,
    pub detections: u64,
    pub videos: u64,
    pub dead_letters: u64,
    pub stored: u64,
    pub store_failures: u64,
    /// Videos left unfinished when the input ended (see `AssemblyState`).
    pub unfinished: u64,
}

impl VideoParts {
    pub fn report(&self) -> VideoReport {
        use std::sync::atomic::Ordering::Relaxed;
        VideoReport {
            frames: self.inference.items.get(),
            unscored: self.inference.failed_items.get(),
            detections: self.sinks.detections.delivered(),
            videos: self.sinks.completions.delivered(),
            dead_letters: self.sinks.dead_letters.delivered(),
            stored: self.uploads.stored.load(Relaxed),
            store_failures: self.uploads.failed.load(Relaxed),
            unfinished: if self.assembly.exhausted.get() { self.assembly.unfinished.get() as u64 } else { 0 },
        }
    }
}

/// Builds the video dataflow on this worker; finished videos go to `store`.
pub(crate) fn build_video(
    worker: &mut timely::worker::Worker,
    config: &JobConfig,
    shared: &ProcessShared<'_>,
    store: Arc<ObjectStore>,
    producer: &KafkaProducer,
    shutdown: Arc<AtomicBool>,
    lease: Option<Arc<Lease>>,
) -> Result<VideoParts> {
    let (models, video, args) = (&config.models, &config.video, &config.dataflow);
    let detector = FireDetector::load(&fire_source(models), fire_options(models))?;
    let dataflow = VideoConfig {
        batching: batching(models),
        assembly: AssemblyConfig {
            overlay: OverlayStyle::default(),
            fire_threshold: models.fire_threshold,
            idle_timeout: Duration::from_secs(video.video_idle_s),
        },
        model_name: detector.name().to_string(),
    };
    let spool = Mp4Spool::new(spool_dir(&config.storage).join(format!("worker-{}", worker.index())), EncodeOptions::default());
    let mut source = source_config(config, &video.video_topic, &video.video_group, video.video_lateness_ms);
    source.max_batch = FRAMES_PER_POLL;
    source.metrics = Some(shared.metrics.source.clone());
    source.board = Some(lease.as_ref().map_or_else(|| shared.boards.video.clone(), |l| l.board.clone()));
    source.lease = lease;
    let probe = ProbeHandle::new();
    let live = shared.live.clone();
    let counter = |operator: &str| shared.metrics.operator_records.with_label_values(&[operator, "out"]);
    worker.dataflow::<u64, _, _>(|scope| -> Result<VideoParts> {
        let decode =
            |_at, key: Option<&[u8]>, payload: &[u8]| decode_video_record(key, payload).map(|record| (record.header().produced_at_ms, record));
        let (events, handle) = kafka_source(scope, source, decode, probe.clone(), shutdown)?;
        let SplitEvents { records, late, dead } = split_events(events);
        let outputs = video_dataflow(records, detector, spool, &dataflow);
        let assembly = outputs.assembly.clone();
        // After a crash: a video whose first replayed frame's event time is before its
        // partition's mark had been stored and announced (the assembly holds the probe at that
        // time until then). Whole or, when the replay began inside it, partial: it is not stored
        // again (a partial one would overwrite the stored video with its tail). Its frames'
        // detections are still published (at least once). The commit rule puts a partially
        // replayed video's first replayed frame before the mark (`connectors/src/kafka/source/commit.rs`).
        let key_mark = handle.marks_by_key();
        let (finished, stored_before) = drop_delivered(
            outputs.finished,
            "VideosDelivered",
            move |v: &FinishedVideo| key_mark(&v.completion.video_id),
            |v: &FinishedVideo| {
                tracing::info!(video = %v.completion.video_id, "stored before the crash; the replayed copy is not stored again");
                if let Some(file) = &v.file {
                    let _ = std::fs::remove_file(&file.path);
                }
            },
        );
        let (completions, uploads) = upload_videos(finished, store);
        // The same operators with or without a live view (one dataflow shape across processes).
        let detections = count_and_show(outputs.detections, counter("fire_model"), live.clone(), |l, b| l.push_detections(b));
        let completions = count_and_show(completions, counter("assemble_videos"), live.clone(), |l, b| l.push_completions(b));
        feed(outputs.frames, move |batch| {
            if let Some(live) = &live {
                live.push_frames(batch, THUMBNAIL_EVERY);
            }
        });
        let topic = video.detections_topic.clone();
        let (detections_done, detections) =
            publish(detections, producer, "DetectionSink", move |d: &FireDetection| Route::keyed(&topic, &d.video_id));
        let topic = video.completions_topic.clone();
        let (completions_done, completions) =
            publish(completions, producer, "CompletionSink", move |c: &VideoCompletion| Route::keyed(&topic, &c.video_id));
        let RejectSinks { dead: (dead_done, dead_letters), late: (late_done, late) } =
            publish_rejects(dead, late, producer, &args.dlq_topic, &args.late_topic, "Video");
        detections_done.probe_with(&probe);
        completions_done.probe_with(&probe);
        dead_done.probe_with(&probe);
        late_done.probe_with(&probe);
        Ok(VideoParts {
            probe: probe.clone(),
            source: handle,
            sinks: VideoSinks { detections, completions, dead_letters, late },
            inference: outputs.inference,
            uploads,
            assembly,
            stored_before,
        })
    })
}
