//! `pitwall run`: the telemetry dataflow on a timely cluster.

use anyhow::Result;

use crate::cli::{Pipeline, RunArgs};
use crate::job::{run_job, timely_config, JobConfig};

pub fn run(args: &RunArgs) -> Result<()> {
    let timely = timely_config(&args.timely)?;
    let config = JobConfig {
        kafka: args.kafka.config(),
        dataflow: args.dataflow.clone(),
        pipelines: args.pipelines.clone(),
        models: args.models.clone(),
        video: args.video.clone(),
        storage: args.storage.clone(),
        exit_at_end: args.exit_at_end,
        bridge: args.bridge.clone(),
    };
    let report = run_job(config, timely, super::shutdown_flag())?;
    eprintln!(
        "processed {} messages ({} records, {} dead letters) on {} workers in {:.2} s: {:.0} msg/s; {} alerts, {} window results",
        report.messages, report.records, report.dead_letters, report.workers, report.seconds, report.msg_per_s, report.alerts, report.windows
    );
    if args.pipelines.contains(&Pipeline::Predictions) {
        eprintln!("{} predictions", report.predictions);
    }
    if args.pipelines.contains(&Pipeline::Video) {
        eprintln!(
            "{} video frames through the fire model, {} detections, {} videos completed ({} stored, {} not stored)",
            report.frames, report.detections, report.videos, report.videos_stored, report.video_store_failures
        );
        if report.videos_unfinished > 0 {
            eprintln!(
                "{} videos were in flight when the input ended: not stored, their frames left uncommitted for the next run to read again whole",
                report.videos_unfinished
            );
        }
    }
    if report.frames_unscored > 0 {
        eprintln!(
            "the fire model failed on {} of {} frames: they were published without a score and their videos were not stored (see the warnings)",
            report.frames_unscored, report.frames
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    if args.exit_at_end && report.frames > 0 && report.frames_unscored == report.frames {
        anyhow::bail!("the fire model failed on every one of the {} frames: nothing was scored", report.frames);
    }
    Ok(())
}
