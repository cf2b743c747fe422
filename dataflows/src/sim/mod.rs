//! Race simulation: a track with a physically plausible lap (`track.rs`) and FastF1-schema
//! telemetry for a field of drivers with injected anomalies and their ground truth (`race.rs`).

pub mod race;
pub mod track;

pub use race::{InjectedAnomaly, Race, RaceConfig, DRIVER_CODES};
