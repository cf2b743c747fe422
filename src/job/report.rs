//! What a job did: each worker's counts, summed per process into the JSON report `run` prints
//! as its last stdout line (tests and benchmarks read it).

use std::collections::BTreeMap;
use std::time::Instant;

use pitwall_connectors::kafka::source::SourceStats;
use serde::Serialize;

use super::video::VideoReport;

/// What one process's workers did, summed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobReport {
    pub workers: usize,
    pub messages: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub late: u64,
    pub alerts: u64,
    pub windows: u64,
    /// Alerts and windows a restart re-derived that the crashed run had delivered: not sent again.
    pub already_delivered: u64,
    pub predictions: u64,
    /// Video frames run through the fire model, detections and completed videos published.
    pub frames: u64,
    /// Frames the fire model gave no verdict for (its run failed): published without a score,
    /// their videos announced with the reason and not stored.
    pub frames_unscored: u64,
    pub detections: u64,
    pub videos: u64,
    /// Overlayed videos stored, and videos that could not be.
    pub videos_stored: u64,
    pub video_store_failures: u64,
    /// Videos in flight when the input ended (SIGTERM, or `--exit-at-end` before their end
    /// marker): not stored, their frames left uncommitted for the next run to read again whole.
    pub videos_unfinished: u64,
    pub commits: u64,
    /// Output messages the broker refused for good (over its size limit, invalid), each
    /// replaced by a dead letter naming it on the dead-letter topic.
    pub undeliverable: u64,
    /// Stall episodes (the broker not answering for a partition) begun, over all partitions.
    pub stalls: u64,
    /// Offsets the broker never delivered (gaps in a partition); see `SourceStats`.
    pub skipped_offsets: u64,
    /// Most telemetry samples waiting for the watermark at once, per worker, summed over this
    /// process's workers (`--max-read-ahead-ms` bounds it when a backlog is replayed).
    pub held_peak: u64,
    /// Samples (of this process) raising each data-quality flag: processed, not rejected.
    pub data_quality_flags: BTreeMap<String, u64>,
    /// From the job's start (before the workers create their clients) to the moment the last
    /// worker had delivered its outputs and committed its offsets; releasing the Kafka clients
    /// afterwards (librdkafka's close handshakes, ~0.2 s) is not counted.
    pub seconds: f64,
    pub msg_per_s: f64,
}

impl JobReport {
    pub(crate) fn add(&mut self, worker: &WorkerReport) {
        self.workers += 1;
        self.messages += worker.source.messages;
        self.records += worker.source.records;
        self.dead_letters += worker.source.dead_letters;
        self.late += worker.source.late;
        self.commits += worker.source.commits;
        self.stalls += worker.source.stalls;
        self.skipped_offsets += worker.source.skipped_offsets;
        self.held_peak += worker.held_peak;
        self.alerts += worker.alerts;
        self.windows += worker.windows;
        self.already_delivered += worker.already_delivered;
        self.predictions += worker.predictions;
        self.undeliverable += worker.undeliverable;
        if let Some((source, video)) = &worker.video {
            self.messages += source.messages;
            self.dead_letters += source.dead_letters;
            self.late += source.late;
            self.commits += source.commits;
            self.stalls += source.stalls;
            self.skipped_offsets += source.skipped_offsets;
            self.frames += video.frames;
            self.frames_unscored += video.unscored;
            self.detections += video.detections;
            self.videos += video.videos;
            self.videos_stored += video.stored;
            self.video_store_failures += video.store_failures;
            self.videos_unfinished += video.unfinished;
        }
    }
}

#[derive(Default)]
pub(crate) struct WorkerReport {
    pub(crate) source: SourceStats,
    pub(crate) alerts: u64,
    pub(crate) windows: u64,
    pub(crate) already_delivered: u64,
    pub(crate) predictions: u64,
    pub(crate) undeliverable: u64,
    pub(crate) video: Option<(SourceStats, VideoReport)>,
    /// Most samples this worker's `in_time_order` held at once.
    pub(crate) held_peak: u64,
    /// When this worker's outputs were all delivered and its offsets committed (under group
    /// membership with `--exit-at-end`: when it read its lease to the end; the group may take
    /// longer to read the rest of the topic).
    pub(crate) finished: Option<Instant>,
}
