//! Race simulation: a track with a physically plausible lap (`track.rs`) and FastF1-schema
//! telemetry for a field of drivers with injected anomalies and their ground truth (`race.rs`);
//! a street-scene video clip with or without fire, and the frames that burn (`video.rs`).

pub mod race;
pub mod track;
pub mod video;

pub use race::{InjectedAnomaly, Race, RaceConfig, DRIVER_CODES};
