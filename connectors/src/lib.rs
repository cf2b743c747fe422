//! pitwall's adapters to the outside world: Kafka (`kafka/`) and FastF1 files (`files/`).
//! No business rules here: decoding and every computation live in `pitwall-dataflows`.

pub mod files;
pub mod kafka;
