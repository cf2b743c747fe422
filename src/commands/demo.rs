//! `pitwall demo`: both pipelines with zero set-up. An embedded Kafka-protocol broker
//! (librdkafka's mock cluster) unless `--brokers` is given, a generated race replayed in real
//! time, the dataflows on 2 workers, and live alerts and lap summaries on stdout; with them, a
//! generated clip with fire replayed in real time through the fire model, its overlayed video
//! stored (S3 when `S3_BUCKET` is set, else `--video-out`), and telemetry predictions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use pitwall_connectors::kafka::admin::create_topics;
use pitwall_connectors::kafka::replay::ReplayConfig;
use pitwall_connectors::kafka::tail::tail;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_connectors::video::decode::ReadOptions;
use pitwall_connectors::video::publish::{publish_video, PublishOptions};
use pitwall_dataflows::records::{Alert, WindowKind, WindowResult};
use pitwall_dataflows::sim::video::SceneConfig;
use pitwall_dataflows::sim::{Race, RaceConfig};
use pitwall_dataflows::video::assemble::VideoCompletion;
use rdkafka::mocking::MockCluster;

use crate::cli::{DataflowArgs, DemoArgs, Pipeline, VideoArgs};
use crate::commands::gen::write_clip;
use crate::commands::produce::produce_records;
use crate::job::{run_job, JobConfig};
use crate::topics::*;

/// How long the printers keep reading after the dataflow has flushed its last outputs.
const PRINTER_GRACE: Duration = Duration::from_millis(1_500);

const DEMO_TOPICS: [(&str, i32); 9] = [
    (TELEMETRY, 4),
    (ALERTS, ALERT_PARTITIONS),
    (WINDOWS, 4),
    (PREDICTIONS, 3),
    (VIDEO_FRAMES, 6),
    (FIRE_DETECTIONS, 6),
    (VIDEO_COMPLETIONS, 3),
    (DLQ, 1),
    (LATE, 1),
];

/// The id of the demo's generated clip.
const DEMO_VIDEO: &str = "demo-fire";

fn print_completion(c: &VideoCompletion) {
    match (&c.location, &c.error) {
        (Some(location), None) => println!(
            "VIDEO {}: {} frames ({:.1} s), {} with fire (max score {:.2}); overlayed video stored at {location} ({} ms after the last frame)",
            c.video_id,
            c.frames,
            c.duration_s,
            c.fire_frames,
            c.max_score,
            c.end_to_stored_ms.unwrap_or(0)
        ),
        (_, error) => println!("VIDEO {}: {} frames, not stored: {}", c.video_id, c.frames, error.as_deref().unwrap_or("unknown error")),
    }
}

fn clock(ms: u64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000)
}

fn print_alert(alert: &Alert) {
    let severity = alert.severity.name().to_uppercase();
    println!(
        "ALERT {severity:<6} {} {:<22} lap {} at {}  {}",
        alert.driver,
        alert.kind.name(),
        alert.lap.unwrap_or(0),
        clock(alert.session_time_ms),
        alert.message
    );
}

fn print_lap(w: &WindowResult) {
    if let WindowKind::Lap { lap } = w.window {
        println!(
            "LAP   {} lap {lap}: {:.1} s, avg {:.0} km/h, top {:.0} km/h, {:.0}% braking, {} gear changes, DRS open {:.1} s",
            w.driver,
            (w.end_ms - w.start_ms) as f64 / 1_000.0,
            w.speed.mean,
            w.speed.max,
            w.brake_pct,
            w.gear_changes,
            w.drs_open_ms as f64 / 1_000.0
        );
    }
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let mock;
    let brokers = match &args.brokers {
        Some(brokers) => {
            let topics: Vec<(String, i32)> = DEMO_TOPICS.iter().map(|(t, p)| (t.to_string(), *p)).collect();
            create_topics(&KafkaConfig::new(brokers.clone()), &topics, 1)?;
            brokers.clone()
        }
        None => {
            mock = MockCluster::new(1).context("starting the embedded Kafka broker")?;
            for (topic, partitions) in DEMO_TOPICS {
                mock.create_topic(topic, partitions, 1).with_context(|| format!("creating {topic} on the embedded broker"))?;
            }
            mock.bootstrap_servers()
        }
    };
    let kafka = KafkaConfig::new(brokers.clone());
    let race = Race::generate(&RaceConfig { drivers: args.drivers, laps: args.laps, seed: args.seed, inject_anomalies: true });
    println!(
        "pitwall demo: broker {brokers}{}, {} drivers x {} laps = {} records replayed at {}x, {} injected anomalies, {} workers. Ctrl-C to stop.",
        if args.brokers.is_none() { " (embedded)" } else { "" },
        args.drivers,
        args.laps,
        race.record_count(),
        args.speed,
        race.ground_truth.len(),
        args.workers
    );
    let shutdown = super::shutdown_flag();
    if let Some(seconds) = args.duration {
        let flag = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(seconds));
            flag.store(true, Ordering::SeqCst);
        });
    }
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    // The printers stop after the dataflow has drained, so the windows closed at shutdown show.
    let printers_stop = Arc::new(AtomicBool::new(false));
    let mut printers = Vec::new();
    for topic in [ALERTS, WINDOWS, VIDEO_COMPLETIONS] {
        let (kafka, stop, counts) = (kafka.clone(), printers_stop.clone(), counts.clone());
        printers.push(std::thread::spawn(move || {
            let result = tail(&kafka, topic, false, false, &stop, |message| {
                if let Ok(alert) = serde_json::from_value::<Alert>(message.value.clone()) {
                    *counts.lock().expect("counts lock").entry(format!("{:?} {}", alert.severity, alert.kind.name())).or_default() += 1;
                    print_alert(&alert);
                } else if let Ok(window) = serde_json::from_value::<WindowResult>(message.value.clone()) {
                    print_lap(&window);
                } else if let Ok(completion) = serde_json::from_value::<VideoCompletion>(message.value) {
                    print_completion(&completion);
                }
            });
            if let Err(error) = result {
                tracing::warn!(%error, topic, "demo printer stopped");
            }
        }));
    }
    let producer_kafka = kafka.clone();
    let records = race.all_records();
    let speed = args.speed;
    let replay = ReplayConfig { speed: Some(speed), producers: 4, stop: Some(shutdown.clone()), metrics: None };
    let producer = std::thread::spawn(move || {
        if let Err(error) = produce_records(&producer_kafka, TELEMETRY, records, &replay, true) {
            tracing::error!(%error, "demo producer failed");
        }
    });
    let clip_dir = tempfile::tempdir().context("creating a folder for the demo clip")?;
    let video = if args.no_video {
        None
    } else {
        let clip = clip_dir.path().join(format!("{DEMO_VIDEO}.mp4"));
        let fps = 25;
        let frames = (args.video_seconds.max(0.2) * f64::from(fps)).round() as u64;
        let (truth, _) = write_clip(&clip, SceneConfig { frames, fps, ..SceneConfig::default() })?;
        println!("video: {DEMO_VIDEO}, {frames} frames with fire in frames {:?}, replayed in real time", truth.fire_ranges);
        let (kafka, stop) = (kafka.clone(), shutdown.clone());
        Some(std::thread::spawn(move || {
            let options = PublishOptions {
                topic: VIDEO_FRAMES.into(),
                video_id: DEMO_VIDEO.into(),
                read: ReadOptions::default(),
                realtime: true,
                metrics: None,
            };
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Err(error) = publish_video(&kafka, &clip, &options, Arc::default()) {
                tracing::error!(%error, "demo video producer failed");
            }
        }))
    };
    let dataflow = DataflowArgs { group: format!("pitwall-demo-{}", std::process::id()), ..DataflowArgs::default() };
    let pipelines = if args.no_video { vec![Pipeline::Telemetry] } else { vec![Pipeline::Telemetry, Pipeline::Predictions, Pipeline::Video] };
    let video_args = VideoArgs { video_group: format!("pitwall-demo-video-{}", std::process::id()), ..VideoArgs::default() };
    let timely = timely::Config {
        communication: if args.workers > 1 { timely::CommunicationConfig::Process(args.workers) } else { timely::CommunicationConfig::Thread },
        worker: Default::default(),
    };
    let config = JobConfig {
        kafka,
        dataflow,
        pipelines,
        models: args.models.clone(),
        video: video_args,
        storage: args.storage.clone(),
        exit_at_end: false,
        bridge: args.bridge.clone(),
    };
    let report = run_job(config, timely, shutdown)?;
    // Every client is gone before the embedded broker is dropped at the end of this function.
    let _ = producer.join();
    if let Some(video) = video {
        let _ = video.join();
    }
    std::thread::sleep(PRINTER_GRACE);
    printers_stop.store(true, Ordering::SeqCst);
    for printer in printers {
        let _ = printer.join();
    }
    println!("\nprocessed {} records in {:.1} s; {} alerts, {} window results", report.records, report.seconds, report.alerts, report.windows);
    if !args.no_video {
        println!(
            "{} predictions; {} video frames through the fire model, {} videos completed and stored",
            report.predictions, report.frames, report.videos_stored
        );
    }
    for (kind, count) in counts.lock().expect("counts lock").iter() {
        println!("  {count:>4} x {kind}");
    }
    Ok(())
}
