//! Topic creation: idempotent, so `pitwall topics create` can run before every job, and growing:
//! an existing topic with fewer partitions than asked gets more (never fewer: Kafka cannot
//! shrink a topic).

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaError};

/// What happened to one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    /// It existed with at least the partitions asked for: left as it is.
    AlreadyExists {
        partitions: i32,
    },
    /// It existed with fewer partitions: grown to the count asked for.
    Grown {
        from: i32,
        to: i32,
    },
}

/// Creates each `(topic, partitions)`; a topic that exists already is grown to `partitions` if
/// it has fewer, else left alone, and reported either way.
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
                let asked = topics.iter().find(|(n, _)| *n == name).map_or(0, |(_, p)| *p);
                if partitions < asked {
                    grow(&admin, &options, &name, asked).map_err(|reason| {
                        KafkaError::Other(format!("growing topic `{name}` on {} from {partitions} to {asked} partitions: {reason}", config.brokers))
                    })?;
                    outcomes.push((name, TopicOutcome::Grown { from: partitions, to: asked }));
                } else {
                    outcomes.push((name, TopicOutcome::AlreadyExists { partitions }));
                }
            }
            Err((name, code)) => return Err(KafkaError::Other(format!("creating topic `{name}` on {}: {code}", config.brokers))),
        }
    }
    Ok(outcomes)
}

/// Asks the broker to give `topic` `partitions` partitions in all (CreatePartitions).
fn grow(admin: &AdminClient<DefaultClientContext>, options: &AdminOptions, topic: &str, partitions: i32) -> Result<(), String> {
    let asked = [NewPartitions::new(topic, usize::try_from(partitions).unwrap_or(0))];
    let results = futures_executor::block_on(admin.create_partitions(&asked, options)).map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(code.to_string()),
        None => Err("no answer".into()),
    }
}
