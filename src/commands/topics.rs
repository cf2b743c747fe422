//! `pitwall topics create`: every pitwall topic, idempotently.

use anyhow::{bail, Result};
use pitwall_connectors::kafka::admin::{create_topics, TopicOutcome};

use crate::cli::TopicsCreateArgs;
use crate::topics::*;

pub fn create(args: &TopicsCreateArgs) -> Result<()> {
    if args.alerts_partitions < ALERT_PARTITIONS {
        bail!("--alerts-partitions must be at least {ALERT_PARTITIONS} (high=0, medium=1, low=2)");
    }
    let wanted: Vec<(String, i32)> = [
        (TELEMETRY, args.telemetry_partitions),
        (ALERTS, args.alerts_partitions),
        (WINDOWS, args.windows_partitions),
        (PREDICTIONS, args.predictions_partitions),
        (VIDEO_FRAMES, args.video_frames_partitions),
        (FIRE_DETECTIONS, args.fire_detections_partitions),
        (VIDEO_COMPLETIONS, args.video_completions_partitions),
        (DLQ, args.dlq_partitions),
        (LATE, args.late_partitions),
    ]
    .into_iter()
    .map(|(name, partitions)| (name.to_string(), partitions))
    .collect();
    for (name, outcome) in create_topics(&args.kafka.config(), &wanted, args.replication)? {
        let asked = wanted.iter().find(|(n, _)| *n == name).map_or(0, |(_, p)| *p);
        match outcome {
            TopicOutcome::Created => println!("created {name} ({asked} partitions)"),
            TopicOutcome::Grown { from, to } => println!("grown   {name} ({from} -> {to} partitions)"),
            TopicOutcome::AlreadyExists { partitions } if partitions != asked => {
                println!("exists  {name} ({partitions} partitions; {asked} asked, and a topic never shrinks)")
            }
            TopicOutcome::AlreadyExists { partitions } => {
                println!("exists  {name} ({partitions} partitions)")
            }
        }
    }
    Ok(())
}
