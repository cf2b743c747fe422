//! `pitwall group describe`: a consumer group's partitions, as `kafka-consumer-groups.sh
//! --describe` shows them, with pitwall's delivered-before marks.

use anyhow::{Context, Result};
use pitwall_connectors::kafka::describe::{describe_group, GroupDescription};
use pitwall_connectors::kafka::source::DEFAULT_GROUP;
use serde_json::json;

use crate::cli::{GroupDescribeArgs, Pipeline};
use crate::topics::{TELEMETRY, VIDEO_FRAMES, VIDEO_GROUP};

pub fn describe(args: &GroupDescribeArgs) -> Result<()> {
    let (group, topic) = match args.pipeline {
        Pipeline::Video => (VIDEO_GROUP, VIDEO_FRAMES),
        Pipeline::Telemetry | Pipeline::Predictions => (DEFAULT_GROUP, TELEMETRY),
    };
    let group = args.group.as_deref().unwrap_or(group);
    let topic = args.topic.as_deref().unwrap_or(topic);
    let description = describe_group(&args.kafka.config(), group, topic).with_context(|| format!("describing group `{group}` on `{topic}`"))?;
    if args.json {
        println!("{}", as_json(&description));
    } else {
        print!("{}", as_table(&description));
    }
    Ok(())
}

fn as_json(d: &GroupDescription) -> serde_json::Value {
    let members: Vec<_> = d.members.iter().map(|m| json!({"member_id": m.member_id, "client_id": m.client_id, "host": m.host})).collect();
    let partitions: Vec<_> = d
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "committed": p.committed,
                "log_end": p.log_end,
                "lag": p.lag(),
                "owner": p.owner.as_ref().map(|m| json!({"client_id": m.client_id, "host": m.host, "member_id": m.member_id})),
                "committed_by": p.committed_by,
                "delivered_before": p.delivered_before,
            })
        })
        .collect();
    json!({"group": d.group, "topic": d.topic, "members": members, "members_unknown": d.members_unknown, "partitions": partitions, "lag": d.partitions.iter().map(|p| p.lag()).sum::<i64>()})
}

fn as_table(d: &GroupDescription) -> String {
    let mut out = match &d.members_unknown {
        None => format!("group `{}` on `{}`: {} member(s)\n", d.group, d.topic, d.members.len()),
        Some(why) => format!("group `{}` on `{}`: members unknown ({why})\n", d.group, d.topic),
    };
    out += &format!(
        "{:<10} {:>12} {:>12} {:>10} {:>16}  {:<24}  {}\n",
        "PARTITION", "COMMITTED", "LOG-END", "LAG", "DELIVERED-BEFORE", "OWNER", "COMMITTED-BY"
    );
    for p in &d.partitions {
        let committed = p.committed.map_or_else(|| "-".to_string(), |c| c.to_string());
        let mark = p.delivered_before.map_or_else(|| "-".to_string(), |m| m.to_string());
        let owner = match &p.owner {
            Some(m) if m.host.is_empty() => m.client_id.clone(),
            Some(m) => format!("{} ({})", m.client_id, m.host),
            None => "-".to_string(),
        };
        let by = if p.committed_by.is_empty() { "-" } else { p.committed_by.as_str() };
        out += &format!("{:<10} {:>12} {:>12} {:>10} {:>16}  {:<24}  {}\n", p.partition, committed, p.log_end, p.lag(), mark, owner, by);
    }
    out += &format!("total lag {}\n", d.partitions.iter().map(|p| p.lag()).sum::<i64>());
    out
}
