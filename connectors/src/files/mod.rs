//! FastF1 telemetry files: reading CSV (pandas `to_csv`) and Parquet (pandas/pyarrow) into
//! telemetry records through Arrow record batches (`fastf1.rs`), and writing both formats.
//! `csv.rs` and `parquet.rs` only move bytes to and from batches.

pub mod csv;
pub mod fastf1;
pub mod parquet;

use std::path::{Path, PathBuf};

use pitwall_dataflows::records::TelemetryRecord;
use thiserror::Error;

pub use fastf1::{batch_to_records, records_to_batch, FileOptions};

/// A telemetry file that could not be read or written, with where and why.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: arrow::error::ArrowError },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: ::parquet::errors::ParquetError },
    #[error("{path}: missing required column `{column}`")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: row {row}, column `{column}`: cannot read {value:?} as {expected}")]
    BadValue { path: PathBuf, row: usize, column: &'static str, value: String, expected: &'static str },
    #[error("{path}: no `Driver` column and no driver given (use --driver)")]
    NoDriver { path: PathBuf },
    #[error("{path}: unsupported file type (expected .csv or .parquet)")]
    UnknownFormat { path: PathBuf },
}

/// File formats pitwall reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Reads one telemetry file (by extension).
pub fn read_telemetry(path: &Path, options: &FileOptions) -> Result<Vec<TelemetryRecord>, FileError> {
    match Format::of(path) {
        Some(Format::Csv) => csv::read(path, options),
        Some(Format::Parquet) => parquet::read(path, options),
        None => Err(FileError::UnknownFormat { path: path.to_path_buf() }),
    }
}

/// Writes one telemetry file in `format`.
pub fn write_telemetry(path: &Path, format: Format, records: &[TelemetryRecord]) -> Result<(), FileError> {
    match format {
        Format::Csv => csv::write(path, records),
        Format::Parquet => parquet::write(path, records),
    }
}

/// The telemetry files under `paths`: files as given, directories searched one level deep.
pub fn telemetry_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| FileError::Io { path: path.clone(), source })?;
            let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && Format::of(p).is_some()).collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}
