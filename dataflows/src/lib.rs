//! pitwall's domain records and dataflow operators: pure logic, no I/O.
//!
//! Everything here is testable with in-memory input: the Kafka source and sinks live in
//! `pitwall-connectors` and are wired to these operators in the `pitwall` binary.

pub mod anomalies;
pub mod decode;
pub mod dedupe;
pub mod infer;
pub mod keyed;
pub mod live;
pub mod partition;
pub mod pipeline;
pub mod predict;
pub mod quality;
pub mod queries;
pub mod records;
pub mod restart;
pub mod sim;
pub mod video;
pub mod windows;

pub use records::*;
