"""Compaction by the broker's log cleaner, and what readers at each isolation level see, on the real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from order_system.config import Settings
from order_system.kafka.compaction import (
    CLOSER_KEY, QUICK_COMPACTION, compact_quickly, read_log, records_per_key, superseded, topic_config,
    wait_for_compaction, write_aborted,
)
from order_system.kafka.topics import admin_client, delete_topics

KEYS = [f"order-{i}".encode() for i in range(8)]


@pytest.fixture
def new_topic(settings: Settings, unique: Callable[[str], str]) -> Iterator[Callable[[dict[str, str]], str]]:
    """Creates topics of 3 partitions with the given settings; deletes them after the test."""
    made: list[str] = []

    def make(config: dict[str, str]) -> str:
        name = unique("test-compaction")
        admin = admin_client(settings)
        admin.create_topics([NewTopic(name, 3, 1, config=config)])[name].result(30)
        made.append(name)
        read_log(settings, name)  # returns once every partition answers
        return name

    yield make
    delete_topics(settings, made)


def transactional_producer(settings: Settings, name: str) -> Producer:
    producer = Producer(settings.producer_config(**{"transactional.id": name}))
    producer.init_transactions(30)
    return producer


def write_versions(settings: Settings, topic: str, versions: int) -> None:
    """``versions`` values for every key, each round in its own committed transaction."""
    producer = transactional_producer(settings, f"{topic}-writer")
    for version in range(1, versions + 1):
        producer.begin_transaction()
        for key in KEYS:
            producer.produce(topic, key=key, value=b"v%d" % version)
        producer.commit_transaction(30)


def test_aborted_records_are_seen_only_by_read_uncommitted(settings: Settings, new_topic) -> None:
    topic = new_topic({"cleanup.policy": "compact"})
    write_versions(settings, topic, 1)
    offsets = write_aborted(settings, topic, [(key, b"never", None) for key in KEYS[:3]])
    assert offsets and all(offset >= 0 for offset in offsets.values())

    committed = read_log(settings, topic)
    uncommitted = read_log(settings, topic, "read_uncommitted")
    assert sorted(m.value() for m in committed) == [b"v1"] * len(KEYS)
    assert sorted(m.value() for m in uncommitted) == [b"never"] * 3 + [b"v1"] * len(KEYS)


def test_read_committed_stops_at_an_open_transaction(settings: Settings, new_topic) -> None:
    topic = new_topic({"cleanup.policy": "compact"})
    write_versions(settings, topic, 1)
    producer = transactional_producer(settings, f"{topic}-open")
    producer.begin_transaction()
    producer.produce(topic, key=KEYS[0], value=b"pending")
    producer.flush(30)
    try:
        assert [m.value() for m in read_log(settings, topic, timeout=20)] == [b"v1"] * len(KEYS)
        assert b"pending" in [m.value() for m in read_log(settings, topic, "read_uncommitted", timeout=20)]
    finally:
        producer.abort_transaction(30)


@pytest.mark.slow
def test_the_log_cleaner_removes_superseded_records(settings: Settings, new_topic) -> None:
    topic = new_topic({"cleanup.policy": "compact"})
    write_versions(settings, topic, 4)
    before = read_log(settings, topic)
    assert records_per_key(before) == {key: 4 for key in KEYS}
    assert superseded(before) == 3 * len(KEYS)

    compact_quickly(settings, topic)
    assert all(topic_config(settings, topic)[name] == value for name, value in QUICK_COMPACTION.items())
    result = wait_for_compaction(settings, topic, timeout=90)

    after = read_log(settings, topic)
    assert records_per_key(after) == {key: 1 for key in KEYS}
    assert {m.key(): m.value() for m in after} == {key: b"v4" for key in KEYS}  # the latest value of each key
    assert (result.records_before, result.records_after, result.removed) == (32, 8, 24)
    # really gone from the log, not hidden by the reader: a read_uncommitted reader sees none of them
    # either (only the aborted records that closed the segments, which the cleaner has not reached yet)
    raw = [m for m in read_log(settings, topic, "read_uncommitted") if m.key() != CLOSER_KEY]
    assert sorted(m.value() for m in raw) == [b"v4"] * len(KEYS)
    assert {(m.partition(), m.offset()) for m in raw} == {(m.partition(), m.offset()) for m in after}


@pytest.mark.slow
def test_wait_for_compaction_says_when_the_cleaner_does_not_come(settings: Settings, new_topic) -> None:
    topic = new_topic({"cleanup.policy": "delete", "segment.ms": "100"})  # the cleaner skips delete topics
    write_versions(settings, topic, 2)
    with pytest.raises(TimeoutError, match=r"8 superseded records still there .*log\.cleaner\.backoff\.ms"):
        wait_for_compaction(settings, topic, timeout=4)
    assert len(read_log(settings, topic)) == 16
