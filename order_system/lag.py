"""Consumer lag: how far each group is behind the end of each partition."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from .config import Settings

COLUMNS = ["group", "topic", "partition", "committed", "end_offset", "lag"]


def consumer_lag(settings: Settings, group_ids: Iterable[str], topic: str | None = None,
                 timeout: float = 10.0) -> pd.DataFrame:
    """One row per group and partition: committed offset (-1: none yet), end offset and lag."""
    topic = topic or settings.topic
    rows = []
    for group in group_ids:
        consumer = Consumer(settings.client_config(**{"group.id": group, "enable.auto.commit": False}))
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
            partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
            for tp in committed:
                _, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                done = tp.offset if tp.offset >= 0 else -1
                rows.append({"group": group, "topic": topic, "partition": tp.partition, "committed": done,
                             "end_offset": high, "lag": high - max(done, 0)})
        finally:
            consumer.close()
    return pd.DataFrame(rows, columns=COLUMNS)


def wait_for_zero_lag(settings: Settings, group_ids: Iterable[str], timeout: float = 60.0,
                      topic: str | None = None) -> pd.DataFrame:
    """Poll the lag until every group has committed up to the end; ``TimeoutError`` otherwise."""
    groups = list(group_ids)
    deadline = time.monotonic() + timeout
    while True:
        frame = consumer_lag(settings, groups, topic)
        if not frame.empty and (frame["lag"] == 0).all():
            return frame
        if time.monotonic() > deadline:
            raise TimeoutError(f"lag did not reach 0 within {timeout:.0f}s:\n{frame.to_string(index=False)}")
        time.sleep(0.2)  # committed offsets change on the broker; there is nothing local to wait on
