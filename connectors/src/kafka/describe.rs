//! What `pitwall group describe` prints: per partition of a topic, the group's committed offset,
//! the log end, the lag, the member that owns it now and the delivered-before mark, the way the
//! seed systems' operators watch a group with `kafka-consumer-groups.sh --describe`.
//!
//! The owner is the member whose assignment holds the partition. A broker that leaves the
//! assignments out of its group description (Tansu 0.6 does, and the client id and host too)
//! gets the next best answer: the live member whose client id committed the partition's offset
//! last (pitwall stores its `pitwall@host/pid` with every commit, and Kafka's member ids begin
//! with the client id).
//!
//! The log end is read, not only asked for: some Kafka-protocol brokers (Tansu 0.6) under-report
//! the high watermark, so the describer reads each partition from the reported end until the
//! broker says "end" and nothing more comes, and reports the offset after the last record there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pitwall_dataflows::records::EventTime;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::METADATA_TIMEOUT;
use super::group::{group_members, MemberInfo};
use super::source::{marks_group, read_marks};
use super::{KafkaConfig, KafkaError};

/// How long the end reader waits without a record, once every partition said "end", before it
/// believes the ends (a broker that under-reports the end says "end" early too).
const QUIET: Duration = Duration::from_millis(300);
/// The longest the end reader reads (records still arriving: the end is a moving target).
const END_READ_LIMIT: Duration = Duration::from_secs(5);

/// One partition of the described topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// The offset after the partition's last record.
    pub log_end: i64,
    /// The member reading it now (`None`: no live member holds it, or none can be told).
    pub owner: Option<MemberInfo>,
    /// The instance that committed the offset (its metadata, `pitwall@host/pid`; empty when
    /// another client committed it).
    pub committed_by: String,
    /// The delivered-before mark of the last commit (`None`: no mark, or a clean end).
    pub delivered_before: Option<EventTime>,
}

impl PartitionLag {
    /// Records after the commit (all of them when nothing is committed).
    pub fn lag(&self) -> i64 {
        (self.log_end - self.committed.unwrap_or(0)).max(0)
    }
}

/// A consumer group on one topic.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group: String,
    pub topic: String,
    pub members: Vec<MemberInfo>,
    /// Why the members could not be listed (the broker does not describe groups), if so.
    pub members_unknown: Option<String>,
    pub partitions: Vec<PartitionLag>,
}

/// Describes `group` on `topic` (see the module docs).
pub fn describe_group(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<GroupDescription, KafkaError> {
    // Brokers that do not describe groups (librdkafka's mock cluster) still have commits and ends.
    let (mut members, members_unknown) = match group_members(kafka, group) {
        Ok(members) => (members, None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    for member in &mut members {
        if member.client_id.is_empty() {
            member.client_id = client_id_of(&member.member_id).to_string();
        }
    }
    let assignments_known = members.iter().any(|m| !m.assignment.is_empty());
    // A consumer of the group that never joins it: it reads commits and ends, it owns nothing.
    let reader = kafka.plain_consumer(group)?;
    let count = kafka.partition_count(&reader, topic)?;
    let mut list = TopicPartitionList::new();
    for p in 0..count {
        list.add_partition(topic, p);
    }
    let committed = reader
        .committed_offsets(list, METADATA_TIMEOUT)
        .map_err(KafkaError::client(format!("reading the offsets group `{group}` committed on `{topic}`")))?;
    let marks = read_marks(&kafka.plain_consumer(&marks_group(group))?, topic, count, group)?;
    let ends = log_ends(&reader, topic, count)?;
    let partitions = (0..count)
        .map(|p| {
            let entry = committed.find_partition(topic, p);
            let committed_by = entry.as_ref().map(|e| e.metadata().to_string()).unwrap_or_default();
            let owner = if assignments_known {
                members.iter().find(|m| m.assignment.iter().any(|(t, q)| t == topic && *q == p))
            } else {
                members.iter().find(|m| !committed_by.is_empty() && m.client_id == committed_by)
            };
            PartitionLag {
                partition: p,
                committed: entry.and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                }),
                log_end: ends[p as usize],
                owner: owner.cloned(),
                committed_by,
                delivered_before: marks[p as usize],
            }
        })
        .collect();
    Ok(GroupDescription { group: group.to_string(), topic: topic.to_string(), members, members_unknown, partitions })
}

/// The client id a Kafka member id begins with (`<client id>-<uuid>`), or the whole id.
fn client_id_of(member_id: &str) -> &str {
    match member_id.rsplit_once('-').map(|_| member_id.len().checked_sub(37)) {
        Some(Some(cut)) if member_id.as_bytes()[cut] == b'-' && member_id[cut + 1..].chars().filter(|c| *c == '-').count() == 4 => &member_id[..cut],
        _ => member_id,
    }
}

/// Per partition, the offset after its last record: the broker's high watermark, read past
/// for as long as records come after it.
fn log_ends(reader: &super::config::Reader, topic: &str, count: i32) -> Result<Vec<i64>, KafkaError> {
    let mut ends = Vec::with_capacity(count as usize);
    let mut from = TopicPartitionList::new();
    for p in 0..count {
        let (low, high) = reader
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(KafkaError::client(format!("reading the offsets of `{topic}` partition {p}")))?;
        ends.push(high.max(low).max(0));
        from.add_partition_offset(topic, p, Offset::Offset(ends[p as usize])).map_err(KafkaError::client("building an assignment"))?;
    }
    reader.assign(&from).map_err(KafkaError::client(format!("assigning `{topic}`")))?;
    let mut at_end: HashMap<i32, bool> = HashMap::new();
    let (started, mut last) = (Instant::now(), Instant::now());
    while started.elapsed() < END_READ_LIMIT && !(at_end.len() == count as usize && last.elapsed() >= QUIET) {
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let p = message.partition();
                if let Some(end) = ends.get_mut(p as usize) {
                    *end = (*end).max(message.offset() + 1);
                }
                at_end.remove(&p);
                last = Instant::now();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, true);
            }
            Some(Err(error)) => tracing::warn!(%error, topic, "reading to the log end"),
            None => {}
        }
    }
    Ok(ends)
}

/// The consumer protocol's assignment (what a group member was given), as `(topic, partition)`
/// pairs: version (i16), then topics (i32 count; each a string with an i16 length and its
/// partitions, an i32 count of i32s), then user data. Anything that does not parse is no
/// assignment (another protocol, or a member between rebalances).
pub(crate) fn parse_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    fn parse(mut b: &[u8]) -> Option<Vec<(String, i32)>> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (b.get(..n)?, b.get(n..)?);
            *b = rest;
            Some(head)
        }
        let i16_of = |b: &mut &[u8]| take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]));
        let i32_of = |b: &mut &[u8]| take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]));
        i16_of(&mut b)?;
        let topics = i32_of(&mut b)?;
        let mut out = Vec::new();
        for _ in 0..topics.max(0) {
            let len = usize::try_from(i16_of(&mut b)?).ok()?;
            let topic = std::str::from_utf8(take(&mut b, len)?).ok()?.to_string();
            let partitions = i32_of(&mut b)?;
            for _ in 0..partitions.max(0) {
                out.push((topic.clone(), i32_of(&mut b)?));
            }
        }
        Some(out)
    }
    parse(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            partitions.iter().for_each(|p| b.extend(p.to_be_bytes()));
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn a_member_assignment_parses_into_its_partitions() {
        let bytes = assignment(&[("f1-telemetry", &[0, 3]), ("video-frames", &[1])]);
        assert_eq!(parse_assignment(&bytes), vec![("f1-telemetry".to_string(), 0), ("f1-telemetry".to_string(), 3), ("video-frames".to_string(), 1)]);
        assert_eq!(parse_assignment(&[]), vec![], "a member between rebalances has no assignment");
        assert_eq!(parse_assignment(&bytes[..bytes.len() - 10]), vec![], "a truncated assignment is none, not half of one");
    }

    #[test]
    fn a_member_id_begins_with_its_client_id() {
        assert_eq!(client_id_of("pitwall@vm/562-fc674fb4-1776-4c1d-8f23-269a37060365"), "pitwall@vm/562");
        assert_eq!(client_id_of("rdkafka-fc674fb4-1776-4c1d-8f23-269a37060365"), "rdkafka");
        assert_eq!(client_id_of("short-id"), "short-id", "not `<client>-<uuid>`: kept whole");
        assert_eq!(client_id_of(""), "");
    }

    #[test]
    fn lag_is_what_follows_the_commit() {
        let lag = |committed, log_end| {
            PartitionLag { partition: 0, committed, log_end, owner: None, committed_by: String::new(), delivered_before: None }.lag()
        };
        assert_eq!((lag(Some(40), 100), lag(None, 100), lag(Some(100), 100)), (60, 100, 0));
    }
}
