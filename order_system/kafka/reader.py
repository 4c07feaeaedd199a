"""Read a whole topic, from its first offset to its current end, without joining a group."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from ..config import Settings
from .offsets import watermarks


def read_records(settings: Settings, topic: str, timeout: float = 10.0, limit: int = 100_000) -> list[Message]:
    """All records of ``topic`` from the start up to its current end, without a consumer group."""
    consumer = Consumer(settings.client_config(**{
        "group.id": f"order-system-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # a topic written in transactions ends in a commit marker, never returned as a record:
        # the partition's EOF says the reader is at its end (librdkafka's read_committed default)
        "enable.partition.eof": True}))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = list(metadata.topics[topic].partitions) if topic in metadata.topics else []
        ends = {}
        for p in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, p), timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found: list = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline and len(found) < limit:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    ends.pop(message.partition(), None)
                continue
            found.append(message)
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return sorted(found, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()
