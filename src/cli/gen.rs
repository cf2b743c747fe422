//! `pitwall gen`: test data.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum GenCommand {
    /// Write one FastF1-schema telemetry file per driver plus `ground_truth.json`.
    Race(GenRaceArgs),
    /// Write a synthetic H.264 MP4 clip (a street scene, with or without flames) plus
    /// `FILE.truth.json` with the frame ranges that contain fire.
    Video(GenVideoArgs),
}

#[derive(Args, Debug)]
pub struct GenVideoArgs {
    /// Put flames in the middle 60% of the clip.
    #[arg(long, conflicts_with = "no_fire")]
    pub fire: bool,
    /// No flames (the default when neither flag is given is --fire).
    #[arg(long)]
    pub no_fire: bool,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Frame rate.
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 180)]
    pub height: u32,
    /// Random seed of the scene's texture and flames.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output file (.mp4).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Csv,
    Parquet,
}

#[derive(Args, Debug)]
pub struct GenRaceArgs {
    /// Number of drivers (the 2023 grid's codes, then D21, D22, ...).
    #[arg(long, default_value_t = 20)]
    pub drivers: usize,
    /// Laps per driver (~700 rows per lap per driver).
    #[arg(long, default_value_t = 2)]
    pub laps: u32,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// File format: pandas-style CSV or pyarrow-style Parquet.
    #[arg(long, value_enum, default_value_t = FileFormat::Csv)]
    pub format: FileFormat,
    /// Random seed; the same seed gives the same race.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not inject anomalies (ground_truth.json is then empty).
    #[arg(long)]
    pub no_anomalies: bool,
}
