"""Read the order-processor's output topics as a read_committed consumer: ``order-state`` (each
order's latest committed state) and ``order-effects`` (every committed side effect).

A transaction that was aborted, or is still open, is never seen here. "To the end" means to the
partition's last stable offset at the time: librdkafka reports ``_PARTITION_EOF`` for a
read_committed consumer when its fetch position reaches the LSO (not the high watermark), after
skipping the transaction markers, so the reader stops there (``enable.partition.eof``).

A restore needs more than that (``settle=True``): ``commit_transaction`` returns once the
coordinator decided to commit, and the commit markers reach the partitions a moment later, one
by one. A new owner of a partition may see the previous owner's offsets committed while that
transaction's state records are not readable yet; stopping at the LSO would then miss them. A
settled read samples each partition's high watermark first and reads until its position passed
it, so every transaction written before the call was decided (committed or aborted) and read.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..config import Settings
from ..domain.changelog import order_from_json
from ..domain.errors import InvalidEvent, TopicError
from ..domain.events import parse_value
from ..domain.state_machine import Order
from .offsets import watermarks

log = logging.getLogger("order_system.kafka.changelog_reader")
RESTORE_TIMEOUT = 120.0  # seconds a restore may take before it is reported as failed
SETTLE_SECONDS = 20.0  # a settled read waits this long for open transactions, then reads to the LSO


def read_committed(settings: Settings, topic: str, partitions: Iterable[int] | None = None,
                   timeout: float = RESTORE_TIMEOUT) -> Iterator[Message]:
    """Every committed record of ``topic`` (or of ``partitions`` of it), from the beginning to
    the last stable offset of each partition as the reader reaches it. Raises ``TopicError``
    when the topic is missing or the end is not reached within ``timeout`` seconds."""
    yield from read_to_end(settings, topic, partitions, timeout, "read_committed")


def read_to_end(settings: Settings, topic: str, partitions: Iterable[int] | None = None,
                timeout: float = RESTORE_TIMEOUT, isolation: str = "read_committed",
                settle: bool = False) -> Iterator[Message]:
    """``read_committed``, or with ``isolation="read_uncommitted"`` as such a consumer reads: up to
    the high watermark, records of open and aborted transactions included (notebook 07 shows both).
    ``settle``: read up to each partition's high watermark at the call, waiting (up to
    ``SETTLE_SECONDS``) for transactions still open below it to be decided (see the module
    docstring); past that, it says so in the log and ends at the last stable offset."""
    if isolation not in ("read_committed", "read_uncommitted"):
        raise ValueError(f"isolation is read_committed or read_uncommitted, not {isolation!r}")
    consumer = Consumer(settings.client_config(**{
        "group.id": f"order-system-changelog-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "isolation.level": isolation, "enable.partition.eof": True, "auto.offset.reset": "earliest",
        "fetch.max.bytes": 16 * 1024 * 1024,
        "fetch.wait.max.ms": 50}))  # the broker answers an empty fetch (at the end) at once, not after 500 ms
    try:
        found = consumer.list_topics(topic, timeout=min(timeout, 30)).topics.get(topic)
        if found is None or found.error is not None:
            raise TopicError(f"topic {topic!r} does not exist; run `order-system topics create`")
        if partitions is None:
            partitions = list(found.partitions)
        missing = sorted(set(partitions) - set(found.partitions))
        if missing:
            raise TopicError(f"topic {topic!r} has no partitions {missing}; it must have as many partitions as the "
                             "events topic (see `order-system topics create`)")
        ends = _high_watermarks(settings, topic, partitions, min(timeout, 30)) if settle else {}
        waiting = {p for p in partitions if (ends[p][1] > ends[p][0] if settle else not _empty(consumer, topic, p))}
        if not waiting:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        deadline = time.monotonic() + timeout
        settled_by = time.monotonic() + min(timeout, SETTLE_SECONDS)
        at_end: set[int] = set()  # partitions whose EOF (the last stable offset) the reader is at
        while waiting:
            if settle:  # a read_committed position moves past the markers: it reaches the high watermark
                positions = consumer.position([TopicPartition(topic, p) for p in waiting])
                waiting.difference_update(tp.partition for tp in positions if tp.offset >= ends[tp.partition][1])
                if waiting and at_end >= waiting and time.monotonic() > settled_by:
                    log.warning("%s partitions %s: transactions below the high watermark %s still open after %.0fs "
                                "(positions %s); reading to the last stable offset", topic, sorted(waiting),
                                {p: ends[p][1] for p in waiting}, SETTLE_SECONDS,
                                {tp.partition: tp.offset for tp in positions if tp.partition in waiting})
                    return
                if not waiting:
                    return
            if time.monotonic() > deadline:
                raise TopicError(f"could not read {topic} partitions {sorted(waiting)} to their end within "
                                 f"{timeout:.0f}s")
            for message in consumer.consume(1000, 0.05):  # returns at 1000 records or after the timeout: keep it short
                error = message.error()
                if error is None:
                    at_end.discard(message.partition())
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    if not settle:
                        waiting.discard(message.partition())
                elif error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                                      KafkaError._UNKNOWN_TOPIC):
                    raise TopicError(f"topic {topic!r} (or one of its partitions {sorted(waiting)}) does not exist; "
                                     "run `order-system topics create`")
                elif error.fatal():
                    raise TopicError(f"could not read {topic}: {error.str()}")
                else:
                    log.warning("reading %s: %s", topic, error.str())
    except KafkaException as exc:
        raise TopicError(f"could not read {topic}: {exc.args[0].str()}") from exc
    finally:
        consumer.close()


def _high_watermarks(settings: Settings, topic: str, partitions: Iterable[int],
                     timeout: float) -> dict[int, tuple[int, int]]:
    """Each partition's (low, high) watermarks, records of open transactions counted: asked
    through a read_uncommitted handle, as a read_committed one answers the last stable offset."""
    consumer = Consumer(settings.client_config(**{"group.id": f"order-system-marks-{uuid.uuid4().hex[:8]}",
                                                  "isolation.level": "read_uncommitted"}))
    try:
        return {p: watermarks(consumer, TopicPartition(topic, p), timeout) for p in partitions}
    finally:
        consumer.close()


def _empty(consumer: Consumer, topic: str, partition: int) -> bool:
    """Whether the partition holds nothing committed: for a read_committed consumer librdkafka's
    watermark query (ListOffsets) answers the last stable offset as the high mark. When the
    query fails, the partition is read (its EOF ends it)."""
    try:
        low, high = watermarks(consumer, TopicPartition(topic, partition), 10)
    except KafkaException:
        return False
    return high <= low


def restore_orders(settings: Settings, partitions: Iterable[int],
                   timeout: float = RESTORE_TIMEOUT) -> dict[int, dict[str, Order]]:
    """The committed state of every order in ``partitions`` of ``order-state``, per partition.

    Only the last value of each key is decoded (a compacted topic may still hold older ones); a
    tombstone removes the order; a value that is not an order is logged and skipped.
    """
    latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in partitions}
    # settled: the previous owner's last transaction may be committed with its markers on the way
    for message in read_to_end(settings, settings.state_topic, list(latest), timeout, settle=True):
        key = message.key()
        if key is not None:
            latest[message.partition()][key] = message.value()
    restored: dict[int, dict[str, Order]] = {}
    for partition, values in latest.items():
        orders: dict[str, Order] = {}
        for key, value in values.items():
            if value is None:
                continue
            try:
                order = order_from_json(value)
            except InvalidEvent as exc:
                log.error("skipping %s[%d] key %r: %s", settings.state_topic, partition, key[:100], exc)
                continue
            orders[order.order_id] = order
        restored[partition] = orders
    return restored


def read_order_state(settings: Settings, timeout: float = 60.0) -> dict[str, Order]:
    """Every order's latest committed state in ``order-state`` (all partitions)."""
    orders: dict[str, Order] = {}
    for partition_orders in restore_orders(settings, _all_partitions(settings), timeout).values():
        orders.update(partition_orders)
    return orders


def read_effects(settings: Settings, timeout: float = 60.0, isolation: str = "read_committed") -> pd.DataFrame:
    """Every committed side effect in ``order-effects``, one row each, in partition and offset order
    (``isolation="read_uncommitted"``: also those of open and aborted transactions)."""
    rows = []
    for message in read_to_end(settings, settings.effects_topic, None, timeout, isolation):
        try:
            fields = parse_value(message.value())
        except InvalidEvent:
            continue
        rows.append({"partition": message.partition(), "offset": message.offset(),
                     "event_id": fields.get("eventId"), "order_id": fields.get("orderId"),
                     "version": fields.get("version"), "kind": fields.get("kind"), "detail": fields.get("detail")})
    columns = ["partition", "offset", "event_id", "order_id", "version", "kind", "detail"]
    return pd.DataFrame(rows, columns=columns).sort_values(["partition", "offset"], ignore_index=True)


def _all_partitions(settings: Settings) -> list[int]:
    consumer = Consumer(settings.client_config(**{"group.id": "order-system-metadata"}))
    try:
        found = consumer.list_topics(settings.state_topic, timeout=30).topics.get(settings.state_topic)
        if found is None or found.error is not None:
            raise TopicError(f"topic {settings.state_topic!r} does not exist; run `order-system topics create`")
        return list(found.partitions)
    finally:
        consumer.close()
