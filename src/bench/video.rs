//! `pitwall bench video`: frames/s of fire detection at each cluster shape, against the model
//! alone in this process (the same run's baseline), and the latency of one clip replayed in
//! real time into a running job: each frame's production to its detection, and the end of the
//! clip to its overlayed video being stored. Writes `video.csv` and `video.md` under
//! `<out>/<date>/`.

use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pitwall_connectors::kafka::tail::read_topic;
use pitwall_connectors::kafka::KafkaConfig;
use pitwall_connectors::onnx::fire::FireDetector;
use pitwall_connectors::onnx::init_runtime;
use pitwall_connectors::video::decode::{read_video, ReadOptions};
use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::sim::video::SceneConfig;
use pitwall_dataflows::video::assemble::VideoCompletion;
use pitwall_dataflows::video::detect::FireDetection;
use pitwall_dataflows::video::frame::{FrameHeader, VideoRecord};

use super::broker::Broker;
use super::latency::percentiles;
use super::process::Measured;
use crate::cli::{ModelArgs, VideoBenchArgs};
use crate::commands::gen::write_clip;
use crate::job::models::{fire_options, fire_source};

/// One line of the results.
#[derive(Clone, Debug, Default, serde::Serialize)]
struct VideoRow {
    phase: String,
    frames: u64,
    seconds: f64,
    frames_per_s: f64,
    peak_rss_mb: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    note: String,
}

pub fn video(args: &VideoBenchArgs) -> Result<()> {
    let (videos, seconds) = if args.smoke { (2, 2.0) } else { (args.videos, args.seconds) };
    let broker = Broker::choose(args.broker.brokers.as_ref(), args.broker.mock_broker)?;
    let kafka = args.broker.client.config(broker.brokers());
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let dir = args.out.join(&date);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let work = tempfile::tempdir()?;
    let nonce = std::process::id();
    let clip = work.path().join("clip.mp4");
    let fps = 25;
    let frames_per_clip = (seconds * f64::from(fps)).round() as u64;
    let (width, height) = args.size;
    write_clip(&clip, SceneConfig { frames: frames_per_clip, fps, width, height, ..SceneConfig::default() })?;
    let models = args.models.clone();
    let mut rows = Vec::new();

    eprintln!("baseline: the fire model alone in this process, batches of {}, {} intra-op thread", models.infer_batch, models.intra_threads);
    rows.push(model_alone(&clip, &models)?);

    let topic = format!("bench-video-{nonce}");
    let outputs = [("bench-detections", 6), ("bench-completions", 3), ("bench-dlq", 1), ("bench-late", 1)];
    let mut wanted: Vec<(String, i32)> = vec![(topic.clone(), 6), (format!("{topic}-live"), 6)];
    wanted.extend(outputs.iter().map(|(t, p)| (t.to_string(), *p)));
    broker.create_topics(&kafka, &wanted)?;
    eprintln!("preloading {videos} copies of a {seconds} s clip ({} frames) into {topic}", videos as u64 * frames_per_clip);
    let preload = Instant::now();
    let mut produce_rss: f64 = 0.0;
    for v in 0..videos {
        produce_rss = produce_rss.max(produce(&kafka, &clip, &topic, &format!("clip-{v}"), false, &logs)?.finish(args.timeout())?.peak_rss_mb);
    }
    let preload_s = preload.elapsed().as_secs_f64();
    rows.push(VideoRow {
        phase: "produce".into(),
        frames: videos as u64 * frames_per_clip,
        seconds: preload_s,
        frames_per_s: (videos as u64 * frames_per_clip) as f64 / preload_s,
        peak_rss_mb: produce_rss,
        note: format!("`produce video`, one clip at a time: decode {width}x{height}, scale to --max-width 640, publish"),
        ..VideoRow::default()
    });
    for shape in &args.configs {
        eprintln!("pitwall run --pipelines video {shape} --exit-at-end");
        let mut command = run_command(&kafka, &topic, &format!("bench-video-{nonce}-{}", shape.slug()), shape.workers, work.path(), &models);
        command.arg("--exit-at-end");
        let finished = Measured::spawn(command, &format!("video-run-{}", shape.slug()), &logs)?.finish(args.timeout())?;
        let report = finished.report()?;
        let frames = report["frames"].as_u64().context("report.frames")?;
        if frames != videos as u64 * frames_per_clip || report["videos_stored"].as_u64() != Some(videos as u64) {
            bail!("pitwall run {shape} reported {report}, expected {} frames and {videos} videos", videos as u64 * frames_per_clip);
        }
        let seconds = report["seconds"].as_f64().context("report.seconds")?;
        rows.push(VideoRow {
            phase: format!("run {shape}"),
            frames,
            seconds,
            frames_per_s: frames as f64 / seconds,
            peak_rss_mb: finished.peak_rss_mb,
            note: format!("{videos} videos: read, detect, overlay, encode, store (local folder)"),
            ..VideoRow::default()
        });
    }

    eprintln!("latency: one {seconds} s clip in real time into a running job (-w {})", args.latency_workers);
    rows.extend(live_latency(&kafka, &clip, &format!("{topic}-live"), frames_per_clip, args, work.path(), &logs)?);
    let model = match &models.fire_model {
        Some(path) => format!("{} ({}), batches of {}", path.display(), models.fire_model_kind.name(), models.infer_batch),
        None => format!("built-in fire_colour, batches of {}", models.infer_batch),
    };
    let (csv, markdown) = render(&rows, &broker.describe(), args.size, &model);
    std::fs::write(dir.join("video.csv"), csv)?;
    std::fs::write(dir.join("video.md"), &markdown)?;
    println!("{markdown}");
    eprintln!("wrote {} and video.csv", dir.join("video.md").display());
    Ok(())
}

/// The fire model alone: every frame of the clip through `FireDetector` in batches, no Kafka.
fn model_alone(clip: &Path, models: &ModelArgs) -> Result<VideoRow> {
    init_runtime(models.onnxruntime.as_deref())?;
    let mut detector = FireDetector::load(&fire_source(models), fire_options(models))?;
    let mut records = Vec::new();
    // Frames as the job gets them: `produce video` scales to its default --max-width (640).
    read_video(clip, ReadOptions { max_width: Some(640), fps_limit: None }, |info, frame| -> Result<(), String> {
        let header = FrameHeader {
            video_id: "alone".into(),
            frame_index: frame.index,
            pts_ms: frame.pts_ms,
            produced_at_ms: 0,
            width: frame.image.width,
            height: frame.image.height,
            fps_num: info.fps_num,
            fps_den: info.fps_den,
            total_frames: None,
        };
        records.push(Rc::new(VideoRecord::Frame { header, image: frame.image }));
        Ok(())
    })?;
    let started = Instant::now();
    for batch in records.chunks(models.infer_batch.max(1)) {
        detector.run(batch).map_err(anyhow::Error::msg)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(VideoRow {
        phase: "model alone".into(),
        frames: records.len() as u64,
        seconds,
        frames_per_s: records.len() as f64 / seconds,
        note: {
            let (w, h) = detector.input_size();
            format!("baseline: {} at {w}x{h} (resize + ONNX run), {} intra-op thread(s)", detector.name(), models.intra_threads)
        },
        ..VideoRow::default()
    })
}

fn produce(kafka: &KafkaConfig, clip: &Path, topic: &str, id: &str, realtime: bool, logs: &Path) -> Result<Measured> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["produce", "video"]).arg(clip).args(["--id", id, "--brokers", &kafka.brokers, "--topic", topic, "--quiet"]);
    if realtime {
        command.arg("--realtime");
    }
    Measured::spawn(command, &format!("produce-{id}"), logs)
}

/// The model flags of `models` as `pitwall run` takes them, so every run of the bench uses the
/// model the baseline measured.
fn model_flags(models: &ModelArgs) -> Vec<std::ffi::OsString> {
    let (w, h) = models.model_input;
    let mut flags: Vec<std::ffi::OsString> = [
        "--fire-model-kind".to_string(),
        models.fire_model_kind.name().to_string(),
        "--fire-classes".into(),
        models.fire_classes.join(","),
        "--fire-scores".into(),
        models.fire_scores.to_string(),
        "--model-input".into(),
        format!("{w}x{h}"),
        "--fire-threshold".into(),
        models.fire_threshold.to_string(),
        "--infer-batch".into(),
        models.infer_batch.to_string(),
        "--infer-wait-ms".into(),
        models.infer_wait_ms.to_string(),
        "--intra-threads".into(),
        models.intra_threads.to_string(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    for (flag, path) in [("--fire-model", &models.fire_model), ("--onnxruntime", &models.onnxruntime)] {
        if let Some(path) = path {
            flags.extend([flag.into(), path.clone().into_os_string()]);
        }
    }
    flags
}

fn run_command(kafka: &KafkaConfig, topic: &str, group: &str, workers: usize, work: &Path, models: &ModelArgs) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the running binary"));
    command
        .args([
            "run",
            "--pipelines",
            "video",
            "--brokers",
            &kafka.brokers,
            "-w",
            &workers.to_string(),
            "--video-topic",
            topic,
            "--video-group",
            group,
            // A fixed assignment: the run measures the pipeline, not a group join.
            "--assignment",
            "static",
        ])
        .args([
            "--detections-topic",
            "bench-detections",
            "--completions-topic",
            "bench-completions",
            "--dlq-topic",
            "bench-dlq",
            "--late-topic",
            "bench-late",
        ])
        .arg("--video-out")
        .arg(work.join(format!("videos-{group}")))
        .arg("--spool")
        .arg(work.join(format!("spool-{group}")))
        .env("PITWALL_LOG", std::env::var("PITWALL_LOG").unwrap_or_else(|_| "warn".into()))
        .env_remove("S3_BUCKET")
        .args(model_flags(models));
    command
}

/// A live job, then the clip in real time: per-frame detection latency, end-to-stored latency.
fn live_latency(
    kafka: &KafkaConfig,
    clip: &Path,
    topic: &str,
    frames: u64,
    args: &VideoBenchArgs,
    work: &Path,
    logs: &Path,
) -> Result<Vec<VideoRow>> {
    let group = format!("{topic}-group");
    let job = Measured::spawn(run_command(kafka, topic, &group, args.latency_workers, work, &args.models), "video-live", logs)?;
    // The job has assigned its partitions well within this; frames sent earlier would only wait.
    std::thread::sleep(Duration::from_secs(3));
    let video_id = format!("live-{}", std::process::id());
    let started = Instant::now();
    produce(kafka, clip, topic, &video_id, true, logs)?.finish(args.timeout())?;
    // Read until this video's completion arrives (or the timeout).
    let stop = AtomicBool::new(false);
    let mut completion: Option<VideoCompletion> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while completion.is_none() && Instant::now() < deadline {
        read_topic(kafka, "bench-completions", true, true, &stop, |message| {
            use rdkafka::Message;
            if let Ok(c) = serde_json::from_slice::<VideoCompletion>(message.payload().unwrap_or_default()) {
                if c.video_id == video_id {
                    completion = Some(c);
                }
            }
        })?;
        if completion.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    job.terminate();
    let finished = job.finish(args.timeout())?;
    let completion = completion.context("the live clip's completion never arrived")?;
    let mut latencies = Vec::new();
    read_topic(kafka, "bench-detections", true, true, &stop, |message| {
        use rdkafka::Message;
        if let Ok(d) = serde_json::from_slice::<FireDetection>(message.payload().unwrap_or_default()) {
            if d.video_id == video_id {
                latencies.push(d.latency_ms);
            }
        }
    })?;
    if latencies.len() as u64 != frames {
        bail!("{} detections for the live clip, expected {frames}", latencies.len());
    }
    let p = percentiles(latencies.iter().copied())?;
    let stored = completion.end_to_stored_ms.context("the live clip was not stored")? as f64;
    Ok(vec![
        VideoRow {
            phase: format!("live -w {}: frame -> detection", args.latency_workers),
            frames,
            seconds: elapsed,
            frames_per_s: frames as f64 / elapsed,
            peak_rss_mb: finished.peak_rss_mb,
            p50_ms: Some(p.p50),
            p99_ms: Some(p.p99),
            max_ms: Some(p.max),
            note: "each frame's production to its fire-detections record".into(),
        },
        VideoRow {
            phase: format!("live -w {}: end of clip -> stored", args.latency_workers),
            frames: completion.frames,
            seconds: completion.duration_s,
            frames_per_s: 0.0,
            peak_rss_mb: finished.peak_rss_mb,
            p50_ms: Some(stored),
            p99_ms: None,
            max_ms: None,
            note: format!(
                "end marker produced -> overlayed video encoded ({} ms) and stored ({} ms); first frame -> stored = clip length + that",
                completion.end_to_encoded_ms, stored
            ),
        },
    ])
}

fn render(rows: &[VideoRow], broker: &str, (width, height): (u32, u32), model: &str) -> (String, String) {
    let mut csv = String::from("phase,frames,seconds,frames_per_s,peak_rss_mb,p50_ms,p99_ms,max_ms,note\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_default();
    let mut md = format!(
        "# pitwall bench video\n\nMachine: {}. Broker: {broker}. Clip: generated {width}x{height} at 25 fps; model: {model}.\n\n",
        super::report::machine()
    );
    md.push_str("| phase | frames | seconds | frames/s | vs model alone | peak RSS MB | p50 ms | p99 ms | max ms | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let baseline = rows.iter().find(|r| r.phase == "model alone").map(|r| r.frames_per_s);
    for r in rows {
        csv.push_str(&format!(
            "{},{},{:.3},{:.1},{:.0},{},{},{},\"{}\"\n",
            r.phase,
            r.frames,
            r.seconds,
            r.frames_per_s,
            r.peak_rss_mb,
            opt(r.p50_ms),
            opt(r.p99_ms),
            opt(r.max_ms),
            r.note
        ));
        let ratio = match baseline {
            Some(b) if r.frames_per_s > 0.0 && r.phase.starts_with("run") => format!("{:.0}%", 100.0 * r.frames_per_s / b),
            _ => String::new(),
        };
        let fps = if r.frames_per_s > 0.0 { format!("{:.0}", r.frames_per_s) } else { String::new() };
        md.push_str(&format!(
            "| {} | {} | {:.2} | {fps} | {ratio} | {:.0} | {} | {} | {} | {} |\n",
            r.phase,
            r.frames,
            r.seconds,
            r.peak_rss_mb,
            opt(r.p50_ms),
            opt(r.p99_ms),
            opt(r.max_ms),
            r.note
        ));
    }
    (csv, md)
}

#[cfg(test)]
mod tests {
    use super::model_flags;
    use crate::cli::{BenchCommand, Cli, Command};
    use clap::Parser;

    /// What `bench video` is given about the model reaches every `pitwall run` it starts.
    #[test]
    fn the_bench_passes_its_model_flags_to_the_runs_unchanged() {
        let given = [
            "--fire-model",
            "yolo.onnx",
            "--fire-model-kind",
            "yolo",
            "--fire-classes",
            "flame,smoke,other",
            "--fire-scores",
            "scale=255",
            "--model-input",
            "416x416",
            "--fire-threshold",
            "0.35",
            "--infer-batch",
            "1",
            "--infer-wait-ms",
            "7",
            "--intra-threads",
            "2",
            "--onnxruntime",
            "/opt/ort/libonnxruntime.so",
        ];
        let Command::Bench(BenchCommand::Video(bench)) = Cli::try_parse_from([&["pitwall", "bench", "video"][..], &given].concat()).unwrap().command
        else {
            panic!("not bench video")
        };
        let mut run: Vec<std::ffi::OsString> = ["pitwall", "run", "--brokers", "b:9092"].into_iter().map(Into::into).collect();
        run.extend(model_flags(&bench.models));
        let Command::Run(run) = Cli::try_parse_from(run).unwrap().command else { panic!("not run") };
        assert_eq!(format!("{:?}", run.models), format!("{:?}", bench.models));
        assert_eq!(bench.models.fire_model.as_deref(), Some(std::path::Path::new("yolo.onnx")));
        assert_eq!((bench.models.model_input, bench.models.infer_batch), ((416, 416), 1));
    }
}
