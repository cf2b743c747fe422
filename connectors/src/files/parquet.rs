//! Parquet bytes to and from record batches, with the column types pandas/pyarrow write
//! (timestamp[ns] for Date, duration[ns] for SessionTime and Time).

use std::fs::File;
use std::path::Path;

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::arrow::ArrowWriter;
use pitwall_dataflows::records::TelemetryRecord;

use super::fastf1::FileOptions;
use super::{batch_to_records, records_to_batch, Channels, FileError, TelemetryFile};

pub fn read(path: &Path, options: &FileOptions) -> Result<TelemetryFile, FileError> {
    let parquet = |source| FileError::Parquet { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(|source| FileError::Io { path: path.to_path_buf(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let channels = Channels::of(path, builder.schema())?;
    let reader = builder.with_batch_size(65_536).build().map_err(parquet)?;
    let mut records = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| FileError::Arrow { path: path.to_path_buf(), source })?;
        records.extend(batch_to_records(path, &batch, records.len(), options)?);
    }
    Ok(TelemetryFile { path: path.to_path_buf(), channels, records })
}

pub fn write(path: &Path, records: &[TelemetryRecord]) -> Result<(), FileError> {
    let parquet = |source| FileError::Parquet { path: path.to_path_buf(), source };
    let batch = records_to_batch(records).map_err(|source| FileError::Arrow { path: path.to_path_buf(), source })?;
    let file = File::create(path).map_err(|source| FileError::Io { path: path.to_path_buf(), source })?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet)?;
    writer.write(&batch).map_err(parquet)?;
    writer.close().map_err(parquet)?;
    Ok(())
}
