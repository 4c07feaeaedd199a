"""Read a topic from its first offset to its end, without joining a group: the one reader behind
``read_records``, the changelog reads and restores (``changelog_reader``) and ``compaction.read_log``.

A read_committed reader (the default) never sees a transaction that was aborted, or is still
open. "To the end" means to the partition's last stable offset at the time: librdkafka reports
``_PARTITION_EOF`` for a read_committed consumer when its fetch position reaches the LSO (not the
high watermark), after skipping the transaction markers, so the reader stops there
(``enable.partition.eof``; a topic written in transactions ends in a commit marker, never
returned as a record, so the EOF is what says the reader is at its end). A read_uncommitted
reader ends at the high watermark and sees the records of open and aborted transactions too.

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
from itertools import islice

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..config import Settings
from ..domain.errors import TopicError
from .offsets import end_offsets

log = logging.getLogger("order_system.kafka.reader")
SETTLE_SECONDS = 20.0  # a settled read waits this long for open transactions, then reads to the LSO
_UNKNOWN = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC)


def read_records(settings: Settings, topic: str, timeout: float = 10.0, limit: int = 100_000) -> list[Message]:
    """The committed records of ``topic`` from the start up to its current end, in partition and
    offset order: at most ``limit``, as many as were read within ``timeout`` seconds, none when
    the topic does not exist."""
    found = islice(read_to_end(settings, topic, None, timeout, strict=False), limit)
    return sorted(found, key=lambda m: (m.partition(), m.offset()))


def read_to_end(settings: Settings, topic: str, partitions: Iterable[int] | None = None, timeout: float = 30.0,
                isolation: str = "read_committed", settle: bool = False, strict: bool = True) -> Iterator[Message]:
    """Every record of ``topic`` (or of ``partitions`` of it) from the beginning to each partition's
    end, as a consumer with this ``isolation.level`` reads them; ``settle`` as the module docstring
    says, waiting at most ``SETTLE_SECONDS`` for open transactions (then it says so in the log and
    ends at the last stable offset). Raises ``TopicError`` when the topic is missing or the end is not
    reached within ``timeout`` seconds; ``strict=False``: a missing topic has no records, and the read
    ends at the timeout."""
    consumer = Consumer(settings.client_config(**{
        "group.id": f"order-system-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "isolation.level": isolation, "enable.partition.eof": True, "auto.offset.reset": "earliest",
        "fetch.max.bytes": 16 * 1024 * 1024,
        "fetch.wait.max.ms": 50}))  # the broker answers an empty fetch (at the end) at once, not after 500 ms
    try:
        known_by = time.monotonic() + 1.0  # a broker learns of a topic created a moment ago some 50 ms later
        found = consumer.list_topics(topic, timeout=min(timeout, 30)).topics.get(topic)
        while (found is None or found.error is not None) and time.monotonic() < known_by:
            time.sleep(0.05)
            found = consumer.list_topics(topic, timeout=min(timeout, 30)).topics.get(topic)
        if found is None or found.error is not None:
            if not strict:
                return
            raise TopicError(f"topic {topic!r} does not exist; run `order-system topics create`")
        partitions = list(found.partitions) if partitions is None else list(partitions)
        missing = sorted(set(partitions) - set(found.partitions))
        if missing:
            raise TopicError(f"topic {topic!r} has no partitions {missing}; it must have as many partitions as the "
                             "events topic (see `order-system topics create`)")
        # every partition is read until its EOF (an empty one reports it at once); settled, each one
        # ever written until its position passed its high watermark (records of open transactions counted)
        ends = {p: high for p, (_, high) in end_offsets(settings, topic, min(timeout, 30)).items()
                if p in partitions and high > 0} if settle else {}
        waiting = set(ends) if settle else set(partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        deadline = time.monotonic() + timeout
        settled_by = time.monotonic() + min(timeout, SETTLE_SECONDS)
        at_end: set[int] = set()  # partitions whose EOF (the last stable offset) the reader is at
        while waiting:
            if settle:  # a read_committed position moves past the markers: it reaches the high watermark
                positions = consumer.position([TopicPartition(topic, p) for p in waiting])
                waiting.difference_update(tp.partition for tp in positions if tp.offset >= ends[tp.partition])
                if waiting and at_end >= waiting and time.monotonic() > settled_by:
                    log.warning("%s partitions %s: transactions below the high watermark %s still open after %.0fs "
                                "(positions %s); reading to the last stable offset", topic, sorted(waiting),
                                {p: ends[p] for p in waiting}, SETTLE_SECONDS,
                                {tp.partition: tp.offset for tp in positions if tp.partition in waiting})
                    return
                if not waiting:
                    return
            if time.monotonic() > deadline:
                if not strict:
                    return
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
                elif error.code() in _UNKNOWN:
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

