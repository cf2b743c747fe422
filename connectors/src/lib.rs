//! pitwall's adapters to the outside world: Kafka (`kafka/`), FastF1 files (`files/`) and the
//! HTTP bridge (`bridge/`).
//! No business rules here: decoding and every computation live in `pitwall-dataflows`.

pub mod bridge;
pub mod files;
pub mod kafka;
pub mod onnx;
pub mod store;
pub mod video;
