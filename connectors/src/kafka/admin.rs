//! Topic creation: idempotent, so `pitwall topics create` can run before every job.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaError};

/// What happened to one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExists { partitions: i32 },
}

/// Creates each `(topic, partitions)`; topics that exist already are left alone and reported.
pub fn create_topics(config: &KafkaConfig, topics: &[(String, i32)], replication: i32) -> Result<Vec<(String, TopicOutcome)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        config.client(&[]).create().map_err(KafkaError::client(format!("creating an admin client for {}", config.brokers)))?;
    let new: Vec<NewTopic> = topics.iter().map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))).collect();
    let options = AdminOptions::new().operation_timeout(Some(super::config::METADATA_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics(&new, &options)).map_err(KafkaError::client("creating topics"))?;
    let probe = config.plain_consumer("pitwall-admin")?;
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Ok(name) => outcomes.push((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let partitions = config.partition_count(&probe, &name)?;
                outcomes.push((name, TopicOutcome::AlreadyExists { partitions }));
            }
            Err((name, code)) => return Err(KafkaError::Other(format!("creating topic `{name}` on {}: {code}", config.brokers))),
        }
    }
    Ok(outcomes)
}
