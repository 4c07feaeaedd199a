"""What the exactly-once loop (``transactions.py``) works on: a batch of records, and what the
group's ``process`` decided for it.

``process(records, sleep)`` is pure: it reads the records and its own state and returns a
``Batch``, the records to write in the batch's transaction (``Output``) and what to apply in
memory once the transaction committed (``on_commit``). It never writes to Kafka itself, so a
batch that is aborted and decided again leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition

from .records import Received


class Output(NamedTuple):
    """One record to write in the batch's transaction (``partition`` None: the key decides)."""

    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Batch:
    """What ``process`` decided for a batch: records to write, and what to do once committed."""

    outputs: list[Output] = field(default_factory=list)
    on_commit: Callable[[], None] = lambda: None
    handled: int = 0  # records finished with, dead letters included
    skipped: int = 0
    dead_lettered: int = 0
    retried: int = 0  # failed attempts tried again in place
    failures: list[tuple[Received, Exception]] = field(default_factory=list)


Process = Callable[[list[Received], Callable[[float], None]], Batch]


def ends(records: list[Received]) -> dict[tuple[str, int], int]:
    """Each partition's position after the batch (consume() returns a partition's records in order):
    the offsets ``send_offsets_to_transaction`` commits with it."""
    return {(record.topic, record.partition): record.offset + 1 for record in records}


def rewind(consumer: Consumer, records: list[Received], log: logging.Logger, name: str) -> None:
    """Make each partition's first record of the batch its next one again (the batch comes again)."""
    first: dict[tuple[str, int], int] = {}
    for record in records:
        first.setdefault((record.topic, record.partition), record.offset)
    for (topic, partition), offset in first.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # taken away meanwhile: its new owner reads it
            log.warning("[%s] could not rewind %s[%d] to %d: %s", name, topic, partition, offset, exc.args[0].str())
