//! `pitwall produce telemetry`: telemetry files replayed into Kafka by a pool of producers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pitwall_connectors::bridge;
use pitwall_connectors::files::{read_telemetry_files, telemetry_files, FileOptions};
use pitwall_connectors::kafka::metrics::ProducerMetrics;
use pitwall_connectors::kafka::replay::{replay, ReplayConfig, ReplayReport, ReplayStream};
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_dataflows::decode::encode_telemetry;
use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::quality::QualityCounts;
use pitwall_dataflows::records::TelemetryRecord;

use crate::cli::{ProduceTelemetryArgs, ProduceVideoArgs};

/// With `--metrics ADDR`: the producer's metrics (and the process's) served at
/// `http://ADDR/metrics` for as long as the command runs.
fn serve_metrics(addr: Option<std::net::SocketAddr>) -> Result<Option<ProducerMetrics>> {
    let Some(addr) = addr else { return Ok(None) };
    let registry = prometheus::Registry::new();
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).context("registering the process metrics")?;
    let metrics = ProducerMetrics::register(&registry).context("registering the producer metrics")?;
    let bound = bridge::serve(addr, registry, Arc::new(Vec::new), bridge::Access::default(), None, None)?;
    eprintln!("producer metrics: http://{bound}/metrics");
    Ok(Some(metrics))
}

/// Groups records by driver, each driver's rows in SessionTime order, on the driver's partition.
pub fn driver_streams(records: Vec<TelemetryRecord>, partitions: i32) -> Vec<ReplayStream<TelemetryRecord>> {
    let mut by_driver: BTreeMap<String, Vec<(u64, TelemetryRecord)>> = BTreeMap::new();
    for record in records {
        by_driver.entry(record.driver.to_string()).or_default().push((record.session_time_ms, record));
    }
    by_driver
        .into_iter()
        .map(|(driver, mut items)| {
            items.sort_by_key(|(time, _)| *time);
            ReplayStream { partition: key_partition(driver.as_bytes(), partitions), key: driver, items }
        })
        .collect()
}

/// The replay speed at which `records` are offered at `rate` messages per second in all.
pub fn speed_for_rate(records: &[TelemetryRecord], rate: f64) -> f64 {
    let (first, last) = records.iter().fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.session_time_ms), hi.max(r.session_time_ms)));
    let span_s = last.saturating_sub(first).max(1) as f64 / 1_000.0;
    rate * span_s / records.len().max(1) as f64
}

/// Replays `records` into `topic`, showing progress unless `quiet`.
pub fn produce_records(kafka: &KafkaConfig, topic: &str, records: Vec<TelemetryRecord>, config: &ReplayConfig, quiet: bool) -> Result<ReplayReport> {
    let consumer = kafka.plain_consumer("pitwall-producer")?;
    let partitions = kafka.partition_count(&consumer, topic)?;
    let total = records.len() as u64;
    let streams = driver_streams(records, partitions);
    let sent = Arc::new(AtomicU64::new(0));
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records ({per_sec}, eta {eta})").expect("valid template"),
    );
    let report = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            replay(
                kafka,
                topic,
                streams,
                config,
                |record: &TelemetryRecord, now| {
                    let mut record = record.clone();
                    record.produced_at_ms = Some(now);
                    encode_telemetry(&record)
                },
                sent.clone(),
            )
        });
        while !worker.is_finished() {
            bar.set_position(sent.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        worker.join().expect("replay thread does not panic")
    })?;
    bar.finish_and_clear();
    Ok(report)
}

pub fn telemetry(args: &ProduceTelemetryArgs) -> Result<()> {
    let positive = |x: f64| x > 0.0 && x.is_finite();
    if !args.max_rate && !positive(args.rate.unwrap_or(args.speed)) {
        bail!("--speed and --rate must be positive numbers");
    }
    let options = FileOptions { driver: args.driver.clone(), lap: args.lap, driver_from_name: args.driver_from_name };
    let files = telemetry_files(&args.input)?;
    if files.is_empty() {
        bail!("no .csv or .parquet files under {:?}", args.input);
    }
    let records = read_telemetry_files(&files, &options)?;
    // Real exports carry sentinels, odd DRS codes and gaps: counted, never rejected.
    let mut quality = QualityCounts::default();
    let mut ordered: Vec<&TelemetryRecord> = records.iter().collect();
    ordered.sort_by(|a, b| (&a.driver, a.session_time_ms).cmp(&(&b.driver, b.session_time_ms)));
    ordered.into_iter().for_each(|r| quality.observe(r));
    tracing::info!(records = records.len(), flags = %quality.summary(), "read telemetry files");
    eprintln!("read {} records; data-quality flags (processed, not rejected): {}", records.len(), quality.summary());
    let speed = args.rate.map_or(args.speed, |rate| speed_for_rate(&records, rate));
    let metrics = serve_metrics(args.metrics)?;
    let config = ReplayConfig { speed: (!args.max_rate).then_some(speed), producers: args.producers, stop: None, metrics };
    let report = produce_records(&args.kafka.config(), &args.topic, records, &config, args.quiet)?;
    if report.failed > 0 {
        bail!("{} of {} records could not be delivered", report.failed, report.sent);
    }
    println!(
        "sent {} records from {} files to {} in {:.2} s: {:.0} msg/s",
        report.sent,
        files.len(),
        args.topic,
        report.elapsed.as_secs_f64(),
        report.rate()
    );
    Ok(())
}

/// `pitwall produce video`: one file's frames into `video-frames`, then its end marker.
pub fn video(args: &ProduceVideoArgs) -> Result<()> {
    use pitwall_connectors::video::decode::ReadOptions;
    use pitwall_connectors::video::publish::{publish_video, PublishOptions};

    use pitwall_dataflows::video::frame::{check_video_id, VIDEO_ID_RULE};

    let video_id = match &args.id {
        Some(id) => id.clone(),
        None => id_from_file_name(&args.file).context("the file has no name to use as the video id: pass --id")?,
    };
    // Refused here, before anything is read or sent: the id names a path where the video is stored.
    check_video_id(&video_id).with_context(|| format!("--id must be {VIDEO_ID_RULE}"))?;
    let options = PublishOptions {
        topic: args.topic.clone(),
        video_id,
        read: ReadOptions { max_width: Some(args.max_width.max(2)), fps_limit: args.fps_limit },
        realtime: args.realtime,
        metrics: serve_metrics(args.metrics)?,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} frames ({per_sec})").expect("valid template"));
    let kafka = args.kafka.config();
    let report = std::thread::scope(|scope| {
        let worker = scope.spawn(|| publish_video(&kafka, &args.file, &options, sent.clone()));
        while !worker.is_finished() {
            bar.set_position(sent.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        worker.join().expect("publisher thread does not panic")
    })
    .with_context(|| format!("publishing {}", args.file.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "published {} frames of `{}` ({}x{}, {:.2} fps, {:.1} MB) to `{}` in {:.2} s; {} failed",
        report.frames,
        report.video_id,
        report.width,
        report.height,
        report.fps,
        report.bytes as f64 / 1e6,
        args.topic,
        report.seconds,
        report.failed
    );
    println!("{}", serde_json::to_string(&report)?);
    if report.failed > 0 {
        bail!("{} frames were not delivered", report.failed);
    }
    Ok(())
}

/// The video id a file gets without `--id`: its name without extension, with every character a
/// video id may not hold (see `VIDEO_ID_RULE`) replaced by `_` and leading dots dropped.
fn id_from_file_name(file: &std::path::Path) -> Option<String> {
    let stem = file.file_stem()?.to_string_lossy();
    let id: String =
        stem.trim_start_matches('.').chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    (!id.is_empty()).then(|| id.chars().take(pitwall_dataflows::video::frame::MAX_VIDEO_ID).collect())
}

#[cfg(test)]
mod tests {
    use super::id_from_file_name;
    use pitwall_dataflows::video::frame::check_video_id;

    #[test]
    fn a_file_name_becomes_a_safe_video_id() {
        for (file, id) in
            [("clips/cam-7.mp4", "cam-7"), ("Wildfire Drone (1).mov", "Wildfire_Drone__1_"), ("..hidden.mp4", "hidden"), ("ça va.mkv", "_a_va")]
        {
            let made = id_from_file_name(std::path::Path::new(file)).expect("an id");
            assert_eq!(made, id, "{file}");
            assert_eq!(check_video_id(&made), Ok(()), "{file}");
        }
        assert_eq!(id_from_file_name(std::path::Path::new("...")), None);
    }
}
