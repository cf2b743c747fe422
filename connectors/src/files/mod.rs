//! FastF1 telemetry files: reading CSV (pandas `to_csv`) and Parquet (pandas/pyarrow) into
//! telemetry records through Arrow record batches (`fastf1.rs`), and writing both formats.
//! `csv.rs` and `parquet.rs` only move bytes to and from batches; `merge.rs` merges a driver's
//! car_data and pos_data files on SessionTime the way FastF1 merges them.

pub mod csv;
pub mod fastf1;
pub mod merge;
pub mod parquet;

use std::path::{Path, PathBuf};

use pitwall_dataflows::records::TelemetryRecord;
use thiserror::Error;

pub use fastf1::{batch_to_records, records_to_batch, Channels, FileOptions};

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
    #[error("{path}: missing channels {missing} (car_data and merged telemetry files carry RPM, Speed, nGear, Throttle, Brake)")]
    MissingChannels { path: PathBuf, missing: String },
    #[error(
        "{path}: position data only (X, Y, Z): missing the car channels RPM, Speed, nGear, Throttle, Brake of driver {driver}; \
         give that driver's car_data file too (both are merged on SessionTime, as FastF1 merges them)"
    )]
    PositionOnly { path: PathBuf, driver: String },
    #[error("{path}: row {row}, column `{column}`: cannot read {value:?} as {expected}")]
    BadValue { path: PathBuf, row: usize, column: &'static str, value: String, expected: &'static str },
    #[error("{path}: no `Driver` column and no driver given (use --driver, or --driver-from-name for files named like VER.csv)")]
    NoDriver { path: PathBuf },
    #[error("{path}: the file name does not start with a driver code (1-8 letters or digits before the first `_` or `.`)")]
    NoDriverInName { path: PathBuf },
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

/// One file's rows and which FastF1 frame they came from.
#[derive(Clone, Debug)]
pub struct TelemetryFile {
    pub path: PathBuf,
    pub channels: Channels,
    pub records: Vec<TelemetryRecord>,
}

/// Reads one file (by extension) as it is: position-only rows are not merged yet.
pub fn read_file(path: &Path, options: &FileOptions) -> Result<TelemetryFile, FileError> {
    match Format::of(path) {
        Some(Format::Csv) => csv::read(path, options),
        Some(Format::Parquet) => parquet::read(path, options),
        None => Err(FileError::UnknownFormat { path: path.to_path_buf() }),
    }
}

/// Reads telemetry files into records: merged telemetry and car_data files as they are, and
/// each driver's pos_data merged into that driver's car_data ([`merge::merge_car_and_pos`]).
pub fn read_telemetry_files(paths: &[PathBuf], options: &FileOptions) -> Result<Vec<TelemetryRecord>, FileError> {
    let files = paths
        .iter()
        .map(|path| {
            if options.driver.is_none() && options.driver_from_name {
                let driver = driver_from_name(path).ok_or_else(|| FileError::NoDriverInName { path: path.clone() })?;
                read_file(path, &FileOptions { driver: Some(driver), ..options.clone() })
            } else {
                read_file(path, options)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    merge::merge_files(files)
}

/// The driver code a file name starts with: `VER.csv`, `VER_car.parquet` -> `VER`.
pub fn driver_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let code = name.split(['_', '.']).next()?;
    (!code.is_empty() && code.len() <= 8 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| code.to_string())
}

/// Reads one telemetry file (by extension); a position-only file alone is an error.
pub fn read_telemetry(path: &Path, options: &FileOptions) -> Result<Vec<TelemetryRecord>, FileError> {
    read_telemetry_files(&[path.to_path_buf()], options)
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
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && Format::of(p).is_some()).collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use pitwall_dataflows::sim::{Race, RaceConfig};

    use super::*;

    fn rows() -> Vec<TelemetryRecord> {
        Race::generate(&RaceConfig { drivers: 1, laps: 1, seed: 9, inject_anomalies: true }).drivers.remove(0).1
    }

    #[test]
    fn csv_and_parquet_round_trip_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        for format in [Format::Csv, Format::Parquet] {
            let path = dir.path().join(format!("VER.{}", format.extension()));
            write_telemetry(&path, format, &rows).unwrap();
            let back = read_telemetry(&path, &FileOptions::default()).unwrap();
            assert_eq!(back, rows, "{format:?}");
        }
    }

    #[test]
    fn reads_pandas_csv_with_bom_index_and_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.csv");
        let text = "\u{feff},Date,SessionTime,DriverAhead,Time,RPM,Speed,nGear,Throttle,Brake,DRS,Source,Distance,X,Y,Z\n\
                    0,2023-03-05 15:03:27.123000,0 days 00:57:56.706000,44,0 days 00:00:00,10955.5,281.0,7,99.8,False,12,car,0.5,1,2,3\n\
                    1,2023-03-05 15:03:27.400000,0 days 00:57:57,,0 days 00:00:00.294000,11012,283,7,104,True,8,pos,-0.2,4,5,6\n";
        std::fs::write(&path, text).unwrap();
        let options = FileOptions { driver: Some("LEC".into()), lap: Some(12), ..FileOptions::default() };
        let rows = read_telemetry(&path, &options).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].session_time_ms, rows[1].session_time_ms), (3_476_706, 3_477_000));
        assert_eq!(rows[0].date_ms, Some(1_678_028_607_123));
        assert_eq!((rows[0].rpm, rows[0].gear, rows[0].drs, rows[0].brake), (10_955.5, 7, 12, false));
        assert_eq!((rows[1].throttle, rows[1].brake, rows[1].distance), (104.0, true, -0.2));
        assert!(rows.iter().all(|r| r.driver == "LEC" && r.lap == Some(12) && r.relative_distance.is_none()));
    }

    #[test]
    fn drivers_come_from_file_names_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let car = "SessionTime,RPM,Speed,nGear,Throttle,Brake\n0 days 00:00:01,10000,100,3,50,False\n0 days 00:00:02,10000,140,4,60,False\n";
        let pos = "SessionTime,X,Y,Z,Status\n0 days 00:00:01.500000,10,20,0,OnTrack\n";
        std::fs::write(dir.path().join("VER.csv"), car).unwrap();
        std::fs::write(dir.path().join("LEC_car.csv"), car).unwrap();
        std::fs::write(dir.path().join("LEC_pos.csv"), pos).unwrap();
        let files = telemetry_files(&[dir.path().to_path_buf()]).unwrap();
        let options = FileOptions { driver_from_name: true, ..FileOptions::default() };
        let rows = read_telemetry_files(&files, &options).unwrap();
        let count = |d: &str| rows.iter().filter(|r| r.driver == d).count();
        assert_eq!((count("VER"), count("LEC")), (2, 3), "LEC's car and pos data merged");
        let merged = rows.iter().find(|r| r.driver == "LEC" && r.session_time_ms == 1_500).unwrap();
        assert_eq!((merged.speed, merged.x), (120.0, 10.0));
        assert_eq!(driver_from_name(Path::new("x/HAM_pos.parquet")).as_deref(), Some("HAM"));
        assert_eq!(driver_from_name(Path::new("x/_odd.csv")), None);
        let err = read_telemetry_files(&[dir.path().join("VER.csv")], &FileOptions::default()).unwrap_err().to_string();
        assert!(err.contains("--driver-from-name"), "{err}");
    }

    #[test]
    fn missing_columns_and_bad_values_name_the_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.csv");
        std::fs::write(&path, "SessionTime,RPM,Speed,nGear,Throttle,Driver\n0 days 00:00:01,1,2,3,4,VER\n").unwrap();
        let err = read_telemetry(&path, &FileOptions::default()).unwrap_err().to_string();
        assert!(err.contains("broken.csv") && err.contains("missing channels Brake"), "{err}");
        std::fs::write(&path, "SessionTime,RPM,Speed,nGear,Throttle,Brake,Driver\n0 days 00:00:01,1,2,3,4,True,VER\nlater,1,2,3,4,False,VER\n")
            .unwrap();
        let err = read_telemetry(&path, &FileOptions::default()).unwrap_err().to_string();
        assert!(err.contains("row 1, column `SessionTime`") && err.contains("\"later\""), "{err}");
        let err = read_telemetry(&dir.path().join("x.json"), &FileOptions::default()).unwrap_err().to_string();
        assert!(err.contains("unsupported file type"), "{err}");
    }
}
