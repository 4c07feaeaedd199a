"""Partitions a consumer runner sent back to a record it has not finished, and those paused
until a retry is due: the bookkeeping ``ConsumerRunner`` (consumer.py) needs besides its loop.

A record that cannot be finished now (its retry is not due yet, or the dead-letter topic did not
take it) is not skipped: ``rewind`` seeks its partition back to it, so that it is the next record
read, and can pause the partition until a time. Until the record is finished, the partition's end
is not stored either (``store_end``), or its offset could move past the record.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from .records import Received

Key = tuple[str, int]  # (topic, partition)


class Rewinds:
    """The partitions of one consumer that wait on a record, and until when each is paused."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name, self.log = name, log
        self._paused: dict[Key, float] = {}  # partition -> when it may be read again (time.time())
        self._rewound: set[Key] = set()  # partitions sent back to a record not yet finished

    def rewind(self, consumer: Consumer, received: Received, pause_until: float | None = None) -> None:
        """Make ``received`` its partition's next record (paused until ``pause_until``)."""
        tp = TopicPartition(received.topic, received.partition, received.offset)
        self._rewound.add((received.topic, received.partition))
        try:
            consumer.seek(tp)
            if pause_until is not None:
                consumer.pause([tp])
                self._paused[(received.topic, received.partition)] = pause_until
        except KafkaException as exc:  # the partition was taken away meanwhile: its new owner reads it
            self.log.warning("[%s] could not go back to offset %d of partition %d: %s", self.name,
                             received.offset, received.partition, exc.args[0].str())

    def finished(self, received: Received) -> None:
        """``received`` is done with: its partition waits on nothing any more."""
        self._rewound.discard((received.topic, received.partition))

    def resume_due(self, consumer: Consumer) -> None:
        """Resume the paused partitions whose time has come."""
        now = time.time()
        due = [key for key, when in self._paused.items() if when <= now]
        if due:
            consumer.resume([TopicPartition(t, p) for t, p in due])
            for key in due:
                del self._paused[key]

    def store_end(self, consumer: Consumer, message: Message) -> None:
        """The partition is read to its end (``message`` is librdkafka's end-of-partition event):
        store that end offset. Every record before it was handed to the runner and finished (records
        come in order and a rewind drops what was fetched), so what lies between is what a
        read_committed consumer never sees: transaction markers and aborted records. Without this,
        a topic written in transactions (order-verdicts) would show a lag of at least 1 for ever
        (its last record is a commit marker)."""
        if (message.topic(), message.partition()) in self._rewound:
            return  # a record of it is still to be handled again
        try:
            consumer.store_offsets(offsets=[TopicPartition(message.topic(), message.partition(), message.offset())])
        except KafkaException:  # the partition was taken away meanwhile: its new owner stores its own
            pass

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """The partitions were revoked or lost: whoever reads them next starts afresh."""
        for partition in partitions:
            self._paused.pop(partition, None)
            self._rewound.discard(partition)
