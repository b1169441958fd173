"""Reads TOPIC's PARTITIONS partitions on BOOTSTRAP from the beginning as a
kafka-python consumer with isolation_level=read_committed (Kafka's own
judgement of what a transaction committed), until EXPECT records arrived
or TIMEOUT seconds passed, then one second more to catch duplicates.
Prints one JSON line: [[partition, offset, value], ...], values as text.

An independent client for the exactly-once tests: pure Python, so it shares
nothing with the librdkafka that strait and testkit use.

usage: read_committed.py BOOTSTRAP TOPIC PARTITIONS EXPECT TIMEOUT
"""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
partitions, expect, timeout = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
consumer = KafkaConsumer(
    bootstrap_servers=bootstrap,
    enable_auto_commit=False,
    isolation_level="read_committed",
)
tps = [TopicPartition(topic, p) for p in range(partitions)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
out = []
deadline = time.monotonic() + timeout
extra = False
while time.monotonic() < deadline:
    if len(out) >= expect and not extra:
        extra = True
        deadline = time.monotonic() + 1
    for tp, records in consumer.poll(timeout_ms=200).items():
        for r in records:
            value = None if r.value is None else r.value.decode("utf-8", "replace")
            out.append([tp.partition, r.offset, value])
consumer.close()
print(json.dumps(out))
