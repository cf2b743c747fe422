//! Kafka: the transport of every pitwall pipeline (rdkafka over librdkafka).
//!
//! `config.rs` builds client settings, `admin.rs` creates topics, `health.rs` decides when a
//! source is stalled, `group.rs` joins a consumer group and hands its assignments to the workers,
//! `describe.rs` reports a group's partitions (commit, end, lag, owner, mark), `source/` is the timely source (partitions, watermarks, commits and where a
//! restart resumes, one file each), `sink.rs` the timely sink (delivery tracking), `replay.rs`
//! the event-time-paced producer pool and `tail.rs` a kcat-like reader.

pub mod admin;
pub mod config;
pub mod describe;
pub mod group;
pub mod health;
pub mod metrics;
pub mod replay;
pub mod sink;
pub mod source;
pub mod tail;

use thiserror::Error;

pub use config::KafkaConfig;

/// A Kafka operation that failed, with what it was doing.
#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("{context}: {source}")]
    Client { context: String, source: rdkafka::error::KafkaError },
    #[error("topic `{topic}` does not exist on {brokers} (create it with `pitwall topics create`)")]
    NoSuchTopic { topic: String, brokers: String },
    #[error("{0}")]
    Other(String),
}

impl KafkaError {
    pub fn client(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
        let context = context.into();
        move |source| KafkaError::Client { context, source }
    }
}

/// Wall-clock Unix time in milliseconds.
pub use pitwall_dataflows::records::now_ms;
