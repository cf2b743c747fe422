//! `pitwall gen race`: a generated race as FastF1-schema files plus its ground truth.

use anyhow::{Context, Result};
use pitwall_connectors::files::{write_telemetry, Format};
use pitwall_dataflows::sim::{Race, RaceConfig};

use crate::cli::{FileFormat, GenRaceArgs};

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
