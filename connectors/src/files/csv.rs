//! CSV bytes to and from record batches. Reading keeps every column as text (pandas writes
//! timedeltas, dates and booleans in its own spellings, parsed in `fastf1.rs`) and strips a
//! UTF-8 byte-order mark. Writing produces what pandas `to_csv()` writes, index column included.

use std::io::{BufWriter, Cursor, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::csv::reader::Format as CsvFormat;
use arrow::csv::ReaderBuilder;
use arrow::datatypes::{DataType, Field, Schema};
use pitwall_dataflows::records::TelemetryRecord;

use super::fastf1::{format_date, format_timedelta, FileOptions};
use super::{batch_to_records, Channels, FileError, TelemetryFile};

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub fn read(path: &Path, options: &FileOptions) -> Result<TelemetryFile, FileError> {
    let io = |source| FileError::Io { path: path.to_path_buf(), source };
    let arrow = |source| FileError::Arrow { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(io)?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let format = CsvFormat::default().with_header(true);
    let (inferred, _) = format.infer_schema(Cursor::new(bytes), Some(0)).map_err(arrow)?;
    let text_schema = Schema::new(inferred.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>());
    let channels = Channels::of(path, &text_schema)?;
    let reader = ReaderBuilder::new(Arc::new(text_schema)).with_format(format).with_batch_size(65_536).build(Cursor::new(bytes)).map_err(arrow)?;
    let mut records = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow)?;
        records.extend(batch_to_records(path, &batch, records.len(), options)?);
    }
    Ok(TelemetryFile { path: path.to_path_buf(), channels, records })
}

pub fn write(path: &Path, records: &[TelemetryRecord]) -> Result<(), FileError> {
    let io = |source| FileError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    writeln!(out, ",Date,SessionTime,Time,RPM,Speed,nGear,Throttle,Brake,DRS,Source,Distance,RelativeDistance,Status,X,Y,Z,Driver,LapNumber")
        .map_err(io)?;
    let mut lap_start = None;
    for (index, r) in records.iter().enumerate() {
        if index == 0 || records[index - 1].lap != r.lap {
            lap_start = Some(r.session_time_ms);
        }
        let lap_time = r.session_time_ms - lap_start.unwrap_or(r.session_time_ms);
        writeln!(
            out,
            "{index},{},{},{},{:?},{:?},{},{:?},{},{},{},{:?},{},{},{:?},{:?},{:?},{},{}",
            r.date_ms.map(format_date).unwrap_or_default(),
            format_timedelta(r.session_time_ms),
            format_timedelta(lap_time),
            r.rpm,
            r.speed,
            r.gear,
            r.throttle,
            if r.brake { "True" } else { "False" },
            r.drs,
            r.source.as_deref().unwrap_or(""),
            r.distance,
            r.relative_distance.map(|d| format!("{d:?}")).unwrap_or_default(),
            r.status.as_deref().unwrap_or(""),
            r.x,
            r.y,
            r.z,
            r.driver,
            r.lap.map(|l| format!("{:?}", f64::from(l))).unwrap_or_default(),
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)
}
