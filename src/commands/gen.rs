//! `pitwall gen race`: a generated race as FastF1-schema files plus its ground truth;
//! `pitwall gen video`: a synthetic clip with or without fire plus the frames that burn.

use std::path::Path;

use anyhow::{Context, Result};
use pitwall_connectors::files::{write_telemetry, Format};
use pitwall_connectors::video::encode::{EncodeOptions, Mp4Writer};
use pitwall_dataflows::sim::video::{FireTruth, Scene, SceneConfig};
use pitwall_dataflows::sim::{Race, RaceConfig};

use crate::cli::{FileFormat, GenRaceArgs, GenVideoArgs};

pub fn race(args: &GenRaceArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let race = Race::generate(&RaceConfig { drivers: args.drivers, laps: args.laps, seed: args.seed, inject_anomalies: !args.no_anomalies });
    let format = match args.format {
        FileFormat::Csv => Format::Csv,
        FileFormat::Parquet => Format::Parquet,
    };
    for (driver, rows) in &race.drivers {
        let path = args.out.join(format!("{driver}.{}", format.extension()));
        write_telemetry(&path, format, rows)?;
    }
    let truth = args.out.join("ground_truth.json");
    std::fs::write(&truth, serde_json::to_vec_pretty(&race.ground_truth)?).with_context(|| format!("writing {}", truth.display()))?;
    println!(
        "wrote {} records for {} drivers x {} laps to {} ({} injected anomalies in {})",
        race.record_count(),
        args.drivers,
        args.laps,
        args.out.display(),
        race.ground_truth.len(),
        truth.display()
    );
    Ok(())
}

/// `pitwall gen video`: a synthetic clip and its fire ground truth (`FILE.truth.json`).
pub fn video(args: &GenVideoArgs) -> Result<()> {
    if args.width < 16 || args.height < 16 || args.width % 2 == 1 || args.height % 2 == 1 {
        anyhow::bail!("--width and --height must be even and at least 16 (got {}x{})", args.width, args.height);
    }
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.fps == 0 {
        anyhow::bail!("--seconds and --fps must be positive");
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let frames = (args.seconds * f64::from(args.fps)).round().max(1.0) as u64;
    let config = SceneConfig { width: args.width, height: args.height, fps: args.fps, frames, fire: !args.no_fire, seed: args.seed };
    let (truth, bytes) = write_clip(&args.out, config)?;
    let truth_path = truth_path(&args.out);
    println!(
        "wrote {} ({} frames, {}x{} at {} fps, {} bytes); fire frames {:?} in {}",
        args.out.display(),
        frames,
        args.width,
        args.height,
        args.fps,
        bytes,
        truth.fire_ranges,
        truth_path.display()
    );
    Ok(())
}

/// Writes the scene as an H.264 MP4 at `out` and its truth next to it (`out.truth.json`);
/// returns the truth and the file's size.
pub fn write_clip(out: &Path, config: SceneConfig) -> Result<(FireTruth, u64)> {
    let scene = Scene::new(config.clone());
    let mut writer =
        Mp4Writer::create(out, config.width, config.height, config.fps, 1, &EncodeOptions { crf: 18, threads: 0, ..EncodeOptions::default() })?;
    for index in 0..config.frames {
        writer.push(&scene.frame(index))?;
    }
    let encoded = writer.finish()?;
    let truth = scene.truth();
    let truth_path = truth_path(out);
    std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?).with_context(|| format!("writing {}", truth_path.display()))?;
    Ok((truth, encoded.bytes))
}

/// `clip.mp4` -> `clip.mp4.truth.json`.
pub fn truth_path(video: &Path) -> std::path::PathBuf {
    let mut name = video.as_os_str().to_owned();
    name.push(".truth.json");
    name.into()
}
