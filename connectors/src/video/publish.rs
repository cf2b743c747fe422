//! `publish_video`: decodes a file and publishes its frames to `video-frames` (key = video id,
//! so one video stays in order on one partition), then the end-of-video marker.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::video::frame::{check_video_id, encode_end, encode_frame, FrameError, FrameHeader};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::decode::{read_video, ReadOptions, VideoInfo};
use super::VideoError;
use crate::kafka::replay::DeliveryCounter;
use crate::kafka::{now_ms, KafkaConfig, KafkaError};

/// How a video is published.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    pub topic: String,
    pub video_id: String,
    pub read: ReadOptions,
    /// Pace frames at the video's frame rate.
    pub realtime: bool,
    /// Where to count what the producer does, if anywhere.
    pub metrics: Option<crate::kafka::metrics::ProducerMetrics>,
}

/// What was published.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PublishReport {
    pub video_id: String,
    pub frames: u64,
    pub failed: u64,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub seconds: f64,
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    VideoId(#[from] FrameError),
}

/// Decodes `file` and publishes it; `sent` counts frames for a progress display. The file is
/// opened before the broker is asked anything, so a bad file is reported as such.
pub fn publish_video(config: &KafkaConfig, file: &Path, options: &PublishOptions, sent: Arc<AtomicU64>) -> Result<PublishReport, PublishError> {
    check_video_id(&options.video_id)?;
    super::decode::probe_video(file)?;
    let context = DeliveryCounter::new("video frame").counting(options.metrics.clone(), &options.topic);
    let mut settings = vec![("linger.ms", "5"), ("message.max.bytes", "16000000"), ("queue.buffering.max.kbytes", "262144")];
    settings.extend_from_slice(context.settings());
    let producer: ThreadedProducer<DeliveryCounter> =
        config.producer(&settings).create_with_context(context).map_err(KafkaError::client(format!("creating a producer for {}", config.brokers)))?;
    let topic = options.topic.as_str();
    let key = options.video_id.as_bytes();
    // Kafka's default (Java) partitioner, murmur2 of the key, as pitwall's other producers use:
    // librdkafka's own default would put the same key elsewhere.
    let partitions = config.partition_count(&config.plain_consumer("pitwall-producer")?, topic)?;
    let partition = key_partition(key, partitions);
    let started = Instant::now();
    let mut bytes = 0_u64;
    let mut last: Option<FrameHeader> = None;
    let send = |payload: &[u8]| -> Result<(), KafkaError> {
        loop {
            let record = BaseRecord::<[u8], [u8]>::to(topic).key(key).partition(partition).payload(payload).timestamp(now_ms() as i64);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => std::thread::sleep(Duration::from_millis(2)),
                Err((e, _)) => return Err(KafkaError::Client { context: format!("producing to `{topic}`"), source: e }),
            }
        }
    };
    let (info, frames) = read_video(file, options.read, |info: &VideoInfo, frame| -> Result<(), KafkaError> {
        // Pace first, then stamp: the production time is when the frame is sent.
        if options.realtime {
            let due = started + Duration::from_secs_f64(frame.index as f64 * f64::from(info.fps_den) / f64::from(info.fps_num.max(1)));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let header = FrameHeader {
            video_id: options.video_id.clone(),
            frame_index: frame.index,
            pts_ms: frame.pts_ms,
            produced_at_ms: now_ms(),
            width: frame.image.width,
            height: frame.image.height,
            fps_num: info.fps_num,
            fps_den: info.fps_den,
            total_frames: info.total_frames,
        };
        let payload = encode_frame(&header, &frame.image);
        bytes += payload.len() as u64;
        send(&payload)?;
        sent.fetch_add(1, Ordering::Relaxed);
        last = Some(header);
        Ok(())
    })?;
    let end = FrameHeader { frame_index: frames, produced_at_ms: now_ms(), ..last.expect("read_video returns at least one frame") };
    send(&encode_end(&end))?;
    producer.flush(Duration::from_secs(60)).map_err(KafkaError::client(format!("flushing `{topic}`")))?;
    Ok(PublishReport {
        video_id: options.video_id.clone(),
        frames,
        failed: producer.context().failed(),
        bytes,
        width: info.width,
        height: info.height,
        fps: f64::from(info.fps_num) / f64::from(info.fps_den.max(1)),
        seconds: started.elapsed().as_secs_f64(),
    })
}
