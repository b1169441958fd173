"""Joins consumer group GROUP on BOOTSTRAP as a kafka-python member
subscribed to TOPIC, prints "assigned" once it holds partitions, and keeps
the membership (polling) until its standard input closes.

An independent client for the tests: on tansu, a kafka-python member is not
listed by DescribeGroups (0 members), so only the broker's refusal of an
offset commit shows that the group is active.

usage: hold_group.py BOOTSTRAP GROUP TOPIC
"""
import select
import sys

from kafka import KafkaConsumer

bootstrap, group, topic = sys.argv[1:4]
consumer = KafkaConsumer(
    topic,
    bootstrap_servers=bootstrap,
    group_id=group,
    enable_auto_commit=False,
    auto_offset_reset="earliest",
    # A topic created moments ago may be missing from the first metadata
    # answer; without this the member would wait 5 minutes to look again.
    metadata_max_age_ms=1000,
)
announced = False
while True:
    consumer.poll(timeout_ms=200)
    if not announced and consumer.assignment():
        print("assigned", flush=True)
        announced = True
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    if ready and not sys.stdin.read(1):
        break
consumer.close(autocommit=False)
