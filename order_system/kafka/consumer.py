"""The consumer runner: what the Spring tutorial's ``@KafkaListener(topics, groupId)`` does.

    runner = ConsumerRunner(settings, "notification-service", {OrderStatus.PAID: on_paid, ...})

One ``ConsumerRunner`` is one Kafka consumer of one group, in its own thread: ``poll()``, decode
the record (``records.decode``: its JSON as an ``OrderEvent``), hand it to the handler of its
status (the tutorial's ``switch``), and only then store its offset (``store_offsets``):
delivery is at least once. Stored offsets are committed in the background, on revocation and
on ``stop()``.

What happens when a record fails is the failure policy's business (``retry.py``: in place, or
through retry topics and the dead-letter topic, like ``@RetryableTopic``); the runner only
promises that no record is skipped without the policy's say and that no record can stop a
partition: a record that cannot be decoded is dead-lettered at once, and anything unexpected
outside a handler dead-letters the record with reason ``internal-error``. Only a failure to
write to the dead-letter or retry topic (the broker) makes the runner try the same record again.
A group that reads another topic gives the runner its own ``decoder`` and ``topics``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..config import Settings
from ..domain.errors import InvalidEvent, PublishError
from ..domain.events import OrderEvent, OrderStatus
from .assignment import Assignment, PartitionsCallback
from .record_log import RecordLog
from .records import Decoder, Deferred, Handler, Received, Stopping, decode
from .retry import FailurePolicy, InPlaceRetry
from .rewinds import Rewinds
from .runner_thread import RunnerHooks, RunnerThread, run_groups

__all__ = ["ConsumerRunner", "Decoder", "Deferred", "Handler", "Received", "Stopping", "decode",
           "run_groups"]


class ConsumerRunner(RunnerThread):
    """One consumer of one group, feeding records to a handler per status in its own thread."""

    def __init__(self, settings: Settings, group_id: str, handlers: Mapping[OrderStatus, Handler], *,
                 topics: Sequence[str] | None = None, name: str | None = None,
                 failure_policy: FailurePolicy | None = None, extra_config: Mapping[str, Any] | None = None,
                 require_key: bool = True, on_assign: PartitionsCallback | None = None, decoder: Decoder | None = None,
                 hooks: RunnerHooks | None = None) -> None:
        """``require_key=False`` accepts keyless records (only to demonstrate why keys matter).
        ``on_assign(partitions)`` is called in the runner's thread with each newly assigned batch of
        ``(topic, partition)``. ``decoder(received)`` reads a record as the event to handle (default:
        ``decode``); it returns None for a record that is not for this group (skipped) and raises
        ``InvalidEvent`` for one that can never be read (dead-lettered)."""
        super().__init__(name or group_id, hooks)
        self.settings, self.group_id, self.handlers = settings, group_id, dict(handlers)
        self.policy = failure_policy or InPlaceRetry()
        self.topics = list(topics or [settings.topic, *self.policy.extra_topics(settings)])
        self.require_key = require_key
        self.decoder: Decoder = decoder or self._decode_event
        self.log = logging.getLogger(f"order_system.kafka.consumer.{self.name}")
        self.record_log = RecordLog(self.name, self.log)
        self._config = settings.client_config(**{
            "group.id": group_id, "client.id": self.name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,  # we store each offset after its record was handled
            "partition.assignment.strategy": "cooperative-sticky",
            "isolation.level": "read_committed",  # (librdkafka's default) an aborted transaction is never seen
            "enable.partition.eof": True,  # see Rewinds.store_end
            # short timeouts so that a stopped or crashed member's partitions move on quickly
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            **(extra_config or {}),
        })
        self.processed = 0  # records finished with: handled, retried or dead-lettered
        self.skipped = 0  # records with no handler for their status, or another group's retries
        self.dead_lettered = 0
        self.stuck = 0  # times a record could not be written to the dead-letter/retry topic (tried again)
        self.rewinds = Rewinds(self.name, self.log)  # partitions sent back to a record not yet finished
        self.partitions = Assignment(self, on_assign, on_revoke=self.rewinds.forget)  # (assignment.py)
        self._consumer: Consumer | None = None

    def start(self) -> ConsumerRunner:
        if self._thread is not None:
            raise RuntimeError(f"runner {self.name} was already started")
        self._consumer = Consumer(self._config)
        self._consumer.subscribe(self.topics, on_assign=self.partitions.assigned, on_revoke=self._on_revoke,
                                 on_lost=self.partitions.lost)
        return self._launch()

    # ---- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stop.is_set():
                self.rewinds.resume_due(consumer)
                message = consumer.poll(0.25)
                if message is None:
                    continue
                if message.error() is None:
                    self._handle(consumer, message)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    self.rewinds.store_end(consumer, message)
                else:
                    self.on_error(message.error())
        finally:
            self._commit(consumer, "on stop")
            consumer.close()
            self.log.info("[%s] closed after %d records", self.name, self.processed + self.skipped)
            with self._progress:
                self._progress.notify_all()

    def _handle(self, consumer: Consumer, message: Message) -> None:
        received = Received.from_message(message)
        try:
            try:
                outcome = self._process(received)
            except (Deferred, Stopping, PublishError):
                raise
            except Exception as exc:  # a bug or an input nobody foresaw, outside any handler
                outcome = self._internal_error(received, exc)
        except Deferred as deferred:
            self.rewinds.rewind(consumer, received, pause_until=deferred.due)
            return
        except Stopping:
            return  # not stored: the record comes again after the restart
        except PublishError:  # the dead-letter or retry topic did not take the record (broker trouble)
            self.log.exception("[%s] could not dispose of partition %d offset %d; will retry it", self.name,
                               received.partition, received.offset)
            self.rewinds.rewind(consumer, received)
            self._stop.wait(1.0)
            self.stuck += 1
            return
        self.rewinds.finished(received)
        try:
            consumer.store_offsets(message=message)  # handled: its offset may be committed now
        except KafkaException as exc:  # the partition was taken away meanwhile: it comes again
            self.log.warning("[%s] could not store offset %d of partition %d: %s", self.name, received.offset,
                             received.partition, exc.args[0].str())
        with self._progress:
            if outcome == "skipped":
                self.skipped += 1
            else:
                self.processed += 1
            self._progress.notify_all()

    def _process(self, received: Received) -> str:
        if not self.policy.accepts(self, received):
            return "skipped"  # e.g. another group's record on a shared retry topic
        try:
            event = self.decoder(received)
        except InvalidEvent as exc:
            self.record_log.received(received, None, self.processed, self.dead_lettered)
            self._failed(received, exc)
            self.policy.reject(self, received, exc)
            return "dead-lettered"
        if event is None:
            return "skipped"  # read, but not for this group (e.g. a verdict that accepted nothing)
        self.record_log.received(received, event, self.processed, self.dead_lettered)
        handler = self.handlers.get(event.status)
        if handler is None:
            return "skipped"

        def attempt(event: OrderEvent, received: Received) -> str | None:
            try:
                return handler(event, received)
            except Exception as exc:
                self._failed(received, exc)
                raise

        self.policy.run(self, received, event, attempt)
        return "handled"

    def _decode_event(self, received: Received) -> OrderEvent:
        return decode(received, self.require_key, self.settings.local_timezone)

    # ---- what the loop needs besides the happy path -----------------------------------------

    def _internal_error(self, received: Received, error: Exception) -> str:
        self.log.exception("[%s] unexpected error with partition %d offset %d; dead-lettering it", self.name,
                           received.partition, received.offset)
        self._failed(received, error)
        self.policy.reject_unexpected(self, received, error)
        return "dead-lettered"

    def _failed(self, received: Received, error: Exception) -> None:
        with self._progress:
            self.failures.append((received, error))
            self._progress.notify_all()

    # ---- counting (called by the failure policy) -------------------------------------------

    def count_dead_letter(self) -> None:
        """Called by the failure policy once a record is safely in the dead-letter topic."""
        with self._progress:
            self.dead_lettered += 1
        self.hooks.dead_lettered(self.group_id)

    def count_retry(self) -> None:
        self.hooks.retried(self.group_id)

    def count_handled(self) -> None:
        self.hooks.handled(self.group_id)

    # ---- offsets and rebalances -------------------------------------------------------------

    def _commit(self, consumer: Consumer, why: str) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self.log.warning("[%s] commit %s failed: %s", self.name, why, exc.args[0].str())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit(consumer, "on revocation")  # what was processed is committed before the partitions move
        self.partitions.revoked(consumer, partitions)
