//! The topics pitwall uses and their default partition counts (those of the seed pipelines).

pub const TELEMETRY: &str = "f1-telemetry";
pub const ALERTS: &str = "f1-alerts";
pub const WINDOWS: &str = "f1-windows";
pub const PREDICTIONS: &str = "f1-predictions";
pub const VIDEO_FRAMES: &str = "video-frames";
pub const FIRE_DETECTIONS: &str = "fire-detections";
pub const VIDEO_COMPLETIONS: &str = "video-completions";
pub const DLQ: &str = "pitwall-dlq";
pub const LATE: &str = "pitwall-late";

/// The video source's default consumer group (the telemetry one is the source's `DEFAULT_GROUP`).
pub const VIDEO_GROUP: &str = "pitwall-video";

/// `f1-alerts` needs one partition per severity: high=0, medium=1, low=2.
pub const ALERT_PARTITIONS: i32 = 3;
