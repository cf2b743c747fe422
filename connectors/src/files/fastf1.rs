//! The FastF1 telemetry schema over Arrow: record batches (from CSV text or typed Parquet) to
//! [`TelemetryRecord`]s and back.
//!
//! Columns are found by name; unknown extra columns (the pandas index, `DriverAhead`, ...) are
//! ignored. Required: SessionTime, and Driver unless a driver is given; then either the car
//! channels (RPM, Speed, nGear, Throttle, Brake: `get_car_data()` or merged `get_telemetry()`)
//! or only the position channels (X, Y, Z: `get_pos_data()`, which `merge.rs` merges with the
//! same driver's car data). Each value may come typed (Parquet: duration[ns], timestamp[ns],
//! numbers, booleans) or as pandas text (`0 days 00:57:56.706000`, `2023-03-05 15:00:00.123000`,
//! `True`); empty cells in optional columns are simply absent.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DurationNanosecondArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, NaiveDateTime};
use pitwall_dataflows::records::TelemetryRecord;

use super::FileError;

/// What a file itself may not say.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// Driver of every row, for files without a `Driver` column (FastF1 exports have none).
    pub driver: Option<String>,
    /// Lap number of every row, for files without `LapNumber`.
    pub lap: Option<u32>,
    /// For files without a `Driver` column and no `driver`: the driver is the file name up to
    /// its first `_` or `.` (`VER.csv`, `VER_car.parquet`, `VER_pos.csv` -> `VER`).
    pub driver_from_name: bool,
}

/// The channels of FastF1's car data, required unless a file is position data only.
pub const CAR_CHANNELS: [&str; 5] = ["RPM", "Speed", "nGear", "Throttle", "Brake"];
/// The channels of FastF1's position data.
pub const POS_CHANNELS: [&str; 3] = ["X", "Y", "Z"];

/// Which FastF1 frame a file holds, told by its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// `get_telemetry()` (car and position channels, merged by FastF1).
    Merged,
    /// `get_car_data()`: car channels, no X/Y/Z.
    Car,
    /// `get_pos_data()`: X/Y/Z and Status only; needs the same driver's car data.
    Pos,
}

impl Channels {
    /// Tells a file's frame by its column names; an error names every missing car channel.
    pub fn of(path: &Path, schema: &Schema) -> Result<Channels, FileError> {
        let has = |name: &str| schema.index_of(name).is_ok();
        let missing: Vec<&str> = CAR_CHANNELS.iter().copied().filter(|c| !has(c)).collect();
        let position = POS_CHANNELS.iter().all(|c| has(c));
        match (missing.len(), position) {
            (0, true) => Ok(Channels::Merged),
            (0, false) => Ok(Channels::Car),
            (n, true) if n == CAR_CHANNELS.len() => Ok(Channels::Pos),
            _ => Err(FileError::MissingChannels { path: path.to_path_buf(), missing: missing.join(", ") }),
        }
    }
}

struct Columns<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
    first_row: usize,
}

impl<'a> Columns<'a> {
    fn get(&self, name: &str) -> Option<&'a ArrayRef> {
        let index = self.batch.schema().index_of(name).ok()?;
        Some(self.batch.column(index))
    }

    fn required(&self, name: &'static str) -> Result<&'a ArrayRef, FileError> {
        self.get(name).ok_or(FileError::MissingColumn { path: self.path.to_path_buf(), column: name })
    }

    fn bad(&self, row: usize, column: &'static str, array: &ArrayRef, expected: &'static str) -> FileError {
        let value = arrow::util::display::array_value_to_string(array, row).unwrap_or_default();
        FileError::BadValue { path: self.path.to_path_buf(), row: self.first_row + row, column, value, expected }
    }
}

fn text(array: &ArrayRef, row: usize) -> Option<&str> {
    if array.is_null(row) {
        return None;
    }
    let value = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row),
        DataType::Utf8View => array.as_string_view().value(row),
        _ => return None,
    };
    let value = value.trim();
    (!value.is_empty()).then_some(value)
}

fn is_text(array: &ArrayRef) -> bool {
    matches!(array.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A number from any numeric, boolean or text column; `Ok(None)` for null/empty.
fn number(array: &ArrayRef, row: usize) -> Result<Option<f64>, ()> {
    if array.is_null(row) {
        return Ok(None);
    }
    use arrow::datatypes::*;
    let value = match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row) as f64,
        DataType::Int32 => f64::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int16 => f64::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int8 => f64::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row) as f64,
        DataType::UInt32 => f64::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt16 => f64::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt8 => f64::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::Boolean => f64::from(u8::from(array.as_boolean().value(row))),
        _ if is_text(array) => match text(array, row) {
            None => return Ok(None),
            Some("True" | "true") => 1.0,
            Some("False" | "false") => 0.0,
            Some(t) => t.parse::<f64>().map_err(|_| ())?,
        },
        _ => return Err(()),
    };
    Ok(Some(value))
}

fn boolean(array: &ArrayRef, row: usize) -> Result<Option<bool>, ()> {
    Ok(number(array, row)?.map(|v| v != 0.0))
}

/// Milliseconds of a duration column or a pandas timedelta string.
fn duration_ms(array: &ArrayRef, row: usize) -> Result<Option<u64>, ()> {
    if array.is_null(row) {
        return Ok(None);
    }
    use arrow::datatypes::*;
    let ms = match array.data_type() {
        DataType::Duration(TimeUnit::Nanosecond) => array.as_primitive::<DurationNanosecondType>().value(row) as f64 / 1e6,
        DataType::Duration(TimeUnit::Microsecond) => array.as_primitive::<DurationMicrosecondType>().value(row) as f64 / 1e3,
        DataType::Duration(TimeUnit::Millisecond) => array.as_primitive::<DurationMillisecondType>().value(row) as f64,
        DataType::Duration(TimeUnit::Second) => array.as_primitive::<DurationSecondType>().value(row) as f64 * 1e3,
        _ if is_text(array) => match text(array, row) {
            None => return Ok(None),
            Some(t) => return parse_timedelta_ms(t).map(Some).ok_or(()),
        },
        // Plain numbers are seconds (what `Timedelta.total_seconds()` exports give).
        _ => number(array, row)?.ok_or(())? * 1e3,
    };
    if ms.is_finite() && ms >= 0.0 {
        Ok(Some(ms.round() as u64))
    } else {
        Err(())
    }
}

/// Epoch milliseconds of a timestamp column or an ISO date string (no zone means UTC).
fn timestamp_ms(array: &ArrayRef, row: usize) -> Result<Option<i64>, ()> {
    if array.is_null(row) {
        return Ok(None);
    }
    use arrow::datatypes::*;
    let ms = match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array.as_primitive::<TimestampNanosecondType>().value(row).div_euclid(1_000_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().value(row).div_euclid(1_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array.as_primitive::<TimestampMillisecondType>().value(row),
        DataType::Timestamp(TimeUnit::Second, _) => array.as_primitive::<TimestampSecondType>().value(row) * 1_000,
        DataType::Date64 => array.as_primitive::<Date64Type>().value(row),
        _ if is_text(array) => match text(array, row) {
            None => return Ok(None),
            Some(t) => return parse_date_ms(t).map(Some).ok_or(()),
        },
        _ => return Err(()),
    };
    Ok(Some(ms))
}

/// Parses pandas timedelta text (`0 days 00:57:56.706000`, `0 days 00:00:11`, `00:01:02.5`) or
/// plain seconds (`3476.706`) to milliseconds.
pub fn parse_timedelta_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1e3).round() as u64);
    }
    let (days, clock) = match text.split_once("day") {
        Some((days, rest)) => (days.trim().parse::<u64>().ok()?, rest.trim_start_matches('s').trim()),
        None => (0, text),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.trim().parse().ok()?;
    let minutes: u64 = parts.next()?.trim().parse().ok()?;
    let seconds: f64 = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() || minutes >= 60 || !(0.0..61.0).contains(&seconds) {
        return None;
    }
    Some(((days * 86_400 + hours * 3_600 + minutes * 60) as f64 * 1e3 + seconds * 1e3).round() as u64)
}

/// Parses an ISO-like date; text without a zone is UTC.
pub fn parse_date_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().timestamp_millis());
        }
        if let Ok(dt) = DateTime::parse_from_str(text, format) {
            return Some(dt.timestamp_millis());
        }
    }
    None
}

/// pandas' spelling of a timedelta; the fraction is omitted on whole seconds, as pandas does.
pub fn format_timedelta(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (h, m, s, frac) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000);
    if frac == 0 {
        format!("{days} days {h:02}:{m:02}:{s:02}")
    } else {
        format!("{days} days {h:02}:{m:02}:{s:02}.{:06}", frac * 1_000)
    }
}

/// pandas' spelling of a naive UTC timestamp.
pub fn format_date(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()).unwrap_or_default()
}

/// Converts one batch; `first_row` numbers rows in error messages. Rows of a position-only
/// batch ([`Channels::Pos`]) carry zeros in the car channels until `merge.rs` fills them.
pub fn batch_to_records(path: &Path, batch: &RecordBatch, first_row: usize, options: &FileOptions) -> Result<Vec<TelemetryRecord>, FileError> {
    let c = Columns { batch, path, first_row };
    let channels = Channels::of(path, &batch.schema())?;
    let session_time = c.required("SessionTime")?;
    let zeros: ArrayRef = Arc::new(Float64Array::from(vec![0.0; batch.num_rows()]));
    let car = |name: &'static str| -> Result<&ArrayRef, FileError> {
        match channels {
            Channels::Pos => Ok(&zeros),
            _ => c.required(name),
        }
    };
    let (rpm, speed, gear, throttle, brake) = (car("RPM")?, car("Speed")?, car("nGear")?, car("Throttle")?, car("Brake")?);
    let default_source = match channels {
        Channels::Pos => Some("pos"),
        Channels::Car => Some("car"),
        Channels::Merged => None,
    };
    let driver = c.get("Driver");
    if driver.is_none() && options.driver.is_none() {
        return Err(FileError::NoDriver { path: path.to_path_buf() });
    }
    let (date, drs, lap, source, status) = (c.get("Date"), c.get("DRS"), c.get("LapNumber"), c.get("Source"), c.get("Status"));
    let (x, y, z, distance, relative) = (c.get("X"), c.get("Y"), c.get("Z"), c.get("Distance"), c.get("RelativeDistance"));

    let mut records = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let need = |array: &ArrayRef, column: &'static str| -> Result<f64, FileError> {
            number(array, row).ok().flatten().ok_or_else(|| c.bad(row, column, array, "a number"))
        };
        let optional = |array: Option<&ArrayRef>, column: &'static str| -> Result<Option<f64>, FileError> {
            match array {
                None => Ok(None),
                Some(a) => number(a, row).map_err(|_| c.bad(row, column, a, "a number")),
            }
        };
        let driver = match (options.driver.as_ref(), driver) {
            (Some(d), _) => d.clone(),
            (None, Some(column)) => match text(column, row) {
                Some(t) => t.to_string(),
                None => number(column, row).ok().flatten().map(|n| format!("{n}")).ok_or_else(|| c.bad(row, "Driver", column, "a driver id"))?,
            },
            (None, None) => unreachable!("checked above"),
        };
        records.push(TelemetryRecord {
            driver: driver.into(),
            lap: match options.lap {
                Some(lap) => Some(lap),
                None => optional(lap, "LapNumber")?.map(|l| l as u32),
            },
            session_time_ms: duration_ms(session_time, row).ok().flatten().ok_or_else(|| c.bad(row, "SessionTime", session_time, "a duration"))?,
            date_ms: match date {
                None => None,
                Some(a) => timestamp_ms(a, row).map_err(|_| c.bad(row, "Date", a, "a date"))?,
            },
            rpm: need(rpm, "RPM")?,
            speed: need(speed, "Speed")?,
            gear: need(gear, "nGear")? as u8,
            throttle: need(throttle, "Throttle")?,
            brake: boolean(brake, row).ok().flatten().ok_or_else(|| c.bad(row, "Brake", brake, "a boolean"))?,
            drs: optional(drs, "DRS")?.unwrap_or(0.0) as u8,
            x: optional(x, "X")?.unwrap_or(0.0),
            y: optional(y, "Y")?.unwrap_or(0.0),
            z: optional(z, "Z")?.unwrap_or(0.0),
            distance: optional(distance, "Distance")?.unwrap_or(0.0),
            relative_distance: optional(relative, "RelativeDistance")?,
            status: status.and_then(|a| text(a, row)).map(Into::into),
            source: source.and_then(|a| text(a, row)).or(default_source).map(Into::into),
            produced_at_ms: None,
        });
    }
    Ok(records)
}

/// The typed batch pandas/pyarrow would write for these records.
pub fn records_to_batch(records: &[TelemetryRecord]) -> Result<RecordBatch, ArrowError> {
    let f = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    let schema = Schema::new(vec![
        f("Date", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        f("SessionTime", DataType::Duration(TimeUnit::Nanosecond)),
        f("RPM", DataType::Float64),
        f("Speed", DataType::Float64),
        f("nGear", DataType::Int64),
        f("Throttle", DataType::Float64),
        f("Brake", DataType::Boolean),
        f("DRS", DataType::Int64),
        f("Source", DataType::Utf8),
        f("Distance", DataType::Float64),
        f("RelativeDistance", DataType::Float64),
        f("Status", DataType::Utf8),
        f("X", DataType::Float64),
        f("Y", DataType::Float64),
        f("Z", DataType::Float64),
        f("Driver", DataType::Utf8),
        f("LapNumber", DataType::Float64),
    ]);
    let floats = |get: fn(&TelemetryRecord) -> Option<f64>| -> ArrayRef { Arc::new(records.iter().map(get).collect::<Float64Array>()) };
    let texts = |get: fn(&TelemetryRecord) -> Option<&str>| -> ArrayRef { Arc::new(records.iter().map(get).collect::<StringArray>()) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(records.iter().map(|r| r.date_ms.map(|d| d * 1_000_000)).collect::<TimestampNanosecondArray>()),
        Arc::new(records.iter().map(|r| Some(r.session_time_ms as i64 * 1_000_000)).collect::<DurationNanosecondArray>()),
        floats(|r| Some(r.rpm)),
        floats(|r| Some(r.speed)),
        Arc::new(records.iter().map(|r| Some(i64::from(r.gear))).collect::<Int64Array>()),
        floats(|r| Some(r.throttle)),
        Arc::new(records.iter().map(|r| Some(r.brake)).collect::<BooleanArray>()),
        Arc::new(records.iter().map(|r| Some(i64::from(r.drs))).collect::<Int64Array>()),
        texts(|r| r.source.as_deref()),
        floats(|r| Some(r.distance)),
        floats(|r| r.relative_distance),
        texts(|r| r.status.as_deref()),
        floats(|r| Some(r.x)),
        floats(|r| Some(r.y)),
        floats(|r| Some(r.z)),
        texts(|r| Some(r.driver.as_str())),
        floats(|r| r.lap.map(f64::from)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pandas_timedeltas_and_dates() {
        assert_eq!(parse_timedelta_ms("0 days 00:57:56.706000"), Some(3_476_706));
        assert_eq!(parse_timedelta_ms("0 days 00:00:11"), Some(11_000));
        assert_eq!(parse_timedelta_ms("1 days 01:00:00.5"), Some(90_000_500));
        assert_eq!(parse_timedelta_ms("3476.706"), Some(3_476_706));
        assert_eq!(parse_timedelta_ms("0 days 00:61:00"), None);
        assert_eq!(parse_timedelta_ms("soon"), None);
        assert_eq!(parse_date_ms("2023-03-05 15:00:00.123000"), Some(1_678_028_400_123));
        assert_eq!(parse_date_ms("2023-03-05T15:00:00"), Some(1_678_028_400_000));
        assert_eq!(parse_date_ms("2023-03-05T16:00:00+01:00"), Some(1_678_028_400_000));
        assert_eq!(format_timedelta(3_476_706), "0 days 00:57:56.706000");
        assert_eq!(format_timedelta(11_000), "0 days 00:00:11");
        assert_eq!(format_date(1_678_028_400_123), "2023-03-05 15:00:00.123000");
    }
}
