"""Watch the broker's log cleaner compact a topic, from a client.

A compacted topic keeps, in the end, the last record of each key; the broker's log cleaner
removes the older ones in the background. Three things decide when:

* the cleaner never touches the segment being written (the active segment); a segment closes
  when it is full (``segment.bytes``) or when a record arrives ``segment.ms`` after its first
  one: closing happens on a write, never on a timer;
* a log is cleaned once its superseded part is ``min.cleanable.dirty.ratio`` of it (50% by
  default), and nothing past the last stable offset (an open transaction) is cleaned;
* an idle cleaner looks for work every ``log.cleaner.backoff.ms`` (a broker setting: Kafka's
  default 15 s; the local broker of this package uses 1 s).

``QUICK_COMPACTION`` tunes a topic so the cleaner gets to it within seconds;
``wait_for_compaction`` waits until the superseded records are really gone.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from ..config import Settings
from ..domain.errors import TopicError
from .reader import read_to_end
from .topics import admin_client, partition_count

QUICK_COMPACTION: Mapping[str, str] = {
    "cleanup.policy": "compact",
    # a write that comes 100 ms after a segment's first record closes that segment
    "segment.ms": "100",
    # the smallest segment size Kafka 4 accepts; here segments close by time long before they fill
    "segment.bytes": str(1 << 20),
    # clean as soon as 1% of the log is superseded records (Kafka's default: 50%)
    "min.cleanable.dirty.ratio": "0.01",
    # a record may go as soon as a later record of its key sits in a closed segment
    "min.compaction.lag.ms": "0",
    # tombstones and transaction markers stay 1 s after their segment was cleaned (default: 1 day)
    "delete.retention.ms": "1000",
}

# The key of the records ``close_active_segments`` writes (compacted topics refuse records without a key).
CLOSER_KEY = b"order-system.close-segment"


@dataclass(frozen=True)
class Compaction:
    """What ``wait_for_compaction`` saw, counted as a read_committed reader sees the topic."""

    records_before: int
    records_after: int
    keys: int
    seconds: float

    @property
    def removed(self) -> int:
        return self.records_before - self.records_after


def compact_quickly(settings: Settings, topic: str, overrides: Mapping[str, str] = QUICK_COMPACTION,
                    timeout: float = 30.0) -> None:
    """Set ``overrides`` on an existing topic (its other settings stay) and wait until the broker shows them."""
    admin = admin_client(settings)
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in overrides.items()]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    try:
        admin.incremental_alter_configs([resource], request_timeout=timeout)[resource].result(timeout=timeout)
    except KafkaException as exc:
        raise TopicError(f"could not change the settings of topic {topic!r}: {exc.args[0].str()}") from exc
    deadline = time.monotonic() + timeout
    while True:
        shown = topic_config(settings, topic, timeout)
        if all(shown.get(name) == value for name, value in overrides.items()):
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topic {topic!r} does not show its new settings {timeout:.0f}s after the change")
        time.sleep(0.1)  # the new config reaches the broker through its metadata; nothing to wait on


def topic_config(settings: Settings, topic: str, timeout: float = 30.0) -> dict[str, str]:
    """The topic's effective settings, as the broker reports them."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = admin_client(settings)  # keep a reference: the future dies with the client
    try:
        found = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    except KafkaException as exc:
        raise TopicError(f"could not read the settings of topic {topic!r}: {exc.args[0].str()}") from exc
    return {name: entry.value for name, entry in found.items()}


def read_log(settings: Settings, topic: str, isolation: str = "read_committed", timeout: float = 30.0) -> list[Message]:
    """Every record of ``topic`` a reader with this ``isolation.level`` sees, from the first offset
    to the end, in partition and offset order (``reader.read_to_end`` says where each level ends)."""
    return sorted(read_to_end(settings, topic, None, timeout, isolation), key=lambda m: (m.partition(), m.offset()))


def records_per_key(records: Iterable[Message]) -> Counter[bytes | None]:
    """How many records each key has (a compacted topic ends with one each)."""
    return Counter(m.key() for m in records)


def superseded(records: Iterable[Message], below: Mapping[int, int] | None = None) -> int:
    """How many records have a later record of their key in the same partition, counting only
    records at offsets under ``below[partition]`` when given (partitions not in it: none)."""
    seen: dict[int, Counter[bytes | None]] = {}
    for m in records:
        if below is None or m.offset() < below.get(m.partition(), 0):
            seen.setdefault(m.partition(), Counter())[m.key()] += 1
    return sum(sum(keys.values()) - len(keys) for keys in seen.values())


def write_aborted(settings: Settings, topic: str, records: Iterable[tuple[bytes | str, bytes | None, int | None]],
                  transactional_id: str | None = None, timeout: float = 30.0) -> dict[int, int]:
    """Write ``records`` (key, value, partition or None for the key's partition) to ``topic`` in one
    transaction, wait until the broker has them, then abort it: what a writer that crashed before
    its commit leaves in the log. read_committed readers never see them; read_uncommitted ones do,
    until the log cleaner removes them. Returns, per partition, the offset of the last one.
    """
    producer = Producer(settings.producer_config(**{
        "transactional.id": transactional_id or f"order-system-aborted-{uuid.uuid4().hex[:8]}", "linger.ms": 0}))
    offsets: dict[int, int] = {}
    failed: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            offsets[message.partition()] = max(message.offset(), offsets.get(message.partition(), -1))
        else:
            failed.append(error.str())

    try:
        producer.init_transactions(timeout)
        producer.begin_transaction()
        for key, value, partition in records:
            extra = {} if partition is None else {"partition": partition}
            producer.produce(topic, key=key, value=value, on_delivery=delivered, **extra)
        producer.flush(timeout)
        producer.abort_transaction(timeout)
    except KafkaException as exc:
        raise TopicError(f"could not write to topic {topic!r}: {exc.args[0].str()}") from exc
    if failed:
        raise TopicError(f"topic {topic!r} refused a record: {failed[0]}")
    return offsets


def close_active_segments(settings: Settings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Close the segments being written: one record to each partition of ``topic``, in a transaction
    that is aborted (``write_aborted``: read_committed readers never see it, the cleaner removes it).
    Returns, per partition, the offset it got: every record below it sits in a closed segment if
    ``segment.ms`` had passed since the segment's first record (else the write closed nothing)."""
    partitions = range(partition_count(settings, topic, timeout))
    offsets = write_aborted(settings, topic, [(CLOSER_KEY, None, p) for p in partitions],
                            f"order-system-close-segments-{topic}"[:200], timeout)
    missing = [p for p in partitions if p not in offsets]
    if missing:
        raise TopicError(f"topic {topic!r}: partitions {missing} did not acknowledge the closing write")
    return offsets


def wait_for_compaction(settings: Settings, topic: str, timeout: float = 60.0, close_every: float = 2.0,
                        io_timeout: float = 30.0) -> Compaction:
    """Close the segments being written, then wait until the log cleaner has removed every record
    written before that which a later record of its key supersedes.

    Counts are those of a read_committed reader. The topic must be compacted with settings that
    let the cleaner run (see ``QUICK_COMPACTION``). If a closing write came before the topic's
    ``segment.ms`` had passed, it closed nothing: the segments are closed again every
    ``close_every`` seconds while waiting. Raises ``TimeoutError`` saying what is left after
    ``timeout`` seconds (each read and write of the topic may take ``io_timeout`` seconds).
    """
    start = time.monotonic()
    before = read_log(settings, topic, timeout=io_timeout)
    boundary = close_active_segments(settings, topic, io_timeout)
    last_close = time.monotonic()
    while True:
        records = read_log(settings, topic, timeout=io_timeout)
        left = superseded(records, boundary)
        if left == 0:
            return Compaction(len(before), len(records), len(records_per_key(records)), time.monotonic() - start)
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"topic {topic!r}: {left} superseded records still there after {timeout:.0f}s. The log cleaner "
                "never cleans the segment being written and, when idle, looks for work every "
                "log.cleaner.backoff.ms (Kafka's default 15 s); check the topic's cleanup.policy, segment.ms and "
                "min.cleanable.dirty.ratio (see QUICK_COMPACTION)")
        if time.monotonic() - last_close > close_every:
            close_active_segments(settings, topic, io_timeout)
            last_close = time.monotonic()
        time.sleep(0.25)  # the cleaner tells clients nothing: reading the topic again is the only way to see it

