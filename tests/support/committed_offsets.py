"""Reads a consumer group's committed offsets with kafka-python, an independent Kafka client
(not librdkafka), and the real end of every partition by reading it to the end.

Usage: committed_offsets.py BROKERS GROUP TOPIC
Prints JSON: {"PARTITION": {"committed": C or null, "end": LAST_OFFSET + 1}, ...}
The end is found by reading, not by ListOffsets, which some brokers (Tansu 0.6) under-report.
"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition


def main(brokers, group, topic):
    reader = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, auto_offset_reset="earliest",
                           consumer_timeout_ms=3000, fetch_max_wait_ms=10)
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic))]
    reader.assign(partitions)
    reader.seek_to_beginning(*partitions)
    end = {tp.partition: 0 for tp in partitions}
    for message in reader:
        end[message.partition] = max(end[message.partition], message.offset + 1)
    reader.close()
    group_view = KafkaConsumer(bootstrap_servers=brokers, group_id=group, enable_auto_commit=False)
    result = {str(tp.partition): {"committed": group_view.committed(tp), "end": end[tp.partition]} for tp in partitions}
    group_view.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
