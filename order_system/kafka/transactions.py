"""The Kafka transaction loop: read a batch, write what it produced and its input offsets in ONE
transaction, repeat. The only module of the package that calls the transactional producer API.

``TransactionalRunner`` is one consumer of one group plus one transactional producer, in its own
thread. Per batch (``consume(num_messages=500)``):

1. ``process(records, sleep)`` (pure, supplied by the caller) decides about every record and
   returns a ``Batch``: the records to write and what to apply in memory once committed;
2. ``begin_transaction``; produce every output; ``send_offsets_to_transaction`` with the
   positions after the batch and ``consumer_group_metadata()`` (so a member of an older group
   generation, a zombie, cannot commit); ``commit_transaction``;
3. only then ``batch.on_commit()``: readers of the in-memory state never see an aborted batch.

On an abortable error the transaction is aborted, every partition of the batch is rewound to
its first record and the batch is decided again from the committed state.

The transactional producer is a ``GuardedProducer`` (``renewal.py``): a call that stalls past
``STALL_SECONDS`` (after a broker's death librdkafka can wait on a coordinator that is gone, far
past its own timeout) raises ``Stalled``; the runner then renews the producer, whose
``init_transactions`` settles the open transaction, and the batch comes again unless that
transaction had committed.

A fenced or fatal producer (another instance started with the same ``transactional.id``) stops
the runner with an error naming the id and what to do. Input is read ``read_committed`` with
auto-commit off: offsets move only inside transactions.

The runner keeps the surface of ``ConsumerRunner`` (start/stop/join/running/stopping,
wait_assigned/wait_until, processed/skipped/dead_lettered/stuck/errors/failures, assignment,
name/group_id, context manager), so ``run_groups``, notebooks and tests use either alike.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..config import Settings
from .consumer import MAX_FAILURES_KEPT
from .records import Received, Stopping, take_batch
from .renewal import STALL_SECONDS, GuardedProducer, Stalled, committed_through, renew
from .runner_thread import RunnerHooks, RunnerThread
from .throttle import KAFKA_ERRORS

BATCH_SIZE = 500  # records per consume() and so per transaction
TRANSACTION_TIMEOUT_MS = 60_000  # the broker aborts a transaction left open longer (a hung instance)
COMMIT_SECONDS = 10.0  # librdkafka's timeout for one commit_transaction call (the stall bound is shorter)
COMMIT_ATTEMPTS = 3  # a retriable commit failure is tried again this often; then its outcome is settled
PREPARE_ATTEMPTS = 5  # tries to read a newly assigned partition's state before the runner gives up


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
PartitionsCallback = Callable[[list[tuple[str, int]]], None]


class Fenced(Exception):
    """The producer can no longer write: fenced by a newer instance with the same id, or fatal."""


class TransactionalRunner(RunnerThread):
    """One consumer and one transactional producer of one group, in their own thread."""

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        transactional_id: str,
        process: Process,
        *,
        topics: Sequence[str] | None = None,
        name: str | None = None,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        extra_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
        batch_size: int = BATCH_SIZE,
        stall_seconds: float = STALL_SECONDS,
        hooks: RunnerHooks | None = None,
    ) -> None:
        """``on_assign(partitions)`` runs in the runner's thread for newly assigned partitions,
        after their committed offsets are stable and before any of their records is processed
        (restore state there); ``on_revoke`` for partitions taken away or lost while running
        (forget it). Stopping the runner calls neither: what was committed stays readable."""
        self.settings = settings
        self.group_id = group_id
        self.transactional_id = transactional_id
        self.process = process
        self.topics = list(topics or [settings.topic])
        super().__init__(name or group_id, hooks)
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.batch_size, self.stall_seconds = batch_size, stall_seconds
        self.log = logging.getLogger(f"order_system.kafka.transactions.{self.name}")
        self._consumer_config = settings.client_config(**{
            "group.id": group_id,
            "client.id": self.name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,  # offsets are committed inside the transactions only
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            # longer than a cluster takes to replace a dead group coordinator (about 6 s when it was
            # also the active controller): a shorter session loses the partitions to a rebalance
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
            # read ahead 4 MiB (thousands of records, several batches), not librdkafka's 64 MiB,
            # whose peak malloc keeps once a long backlog was read
            "queued.max.messages.kbytes": 4096,
            **(extra_config or {}),
        })
        self._producer_options: dict[str, Any] = {
            "transactional.id": transactional_id,
            "client.id": f"{self.name}-tx",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "linger.ms": 5,
            **(producer_config or {}),
        }
        self.processed = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.stuck = 0  # batches aborted and tried again
        self.transactions = 0  # committed transactions
        self.errors: deque[KafkaError] = deque(maxlen=MAX_FAILURES_KEPT)  # the most recent ones
        self.failures: deque[tuple[Received, Exception]] = deque(maxlen=MAX_FAILURES_KEPT)
        self.fatal: str | None = None  # why the runner stopped by itself
        self._consumer: Consumer | None = None
        self._producer: GuardedProducer | None = None
        self.producers = 0  # transactional producers registered (a first one, then one per renewal)
        self.stalls = 0  # transactional calls abandoned after STALL_SECONDS
        self._closing = False

    # ---- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._renew_producer()
            self._consumer = Consumer(self._consumer_config)
            self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                     on_lost=self._on_lost)
            while not self._stop.is_set():
                records = self._records(take_batch(self._consumer, self.batch_size, 0.25))
                if records and not self._stop.is_set():  # asked to stop: they come again
                    self._batch(records)
        except Fenced as exc:
            self._give_up(str(exc))
        except KafkaException as exc:
            self.errors.append(exc.args[0])
            self._give_up(self._fenced_message(exc.args[0]) if exc.args[0].fatal() else
                          f"{self.name}: Kafka error: {exc.args[0].str()}")
        except Exception as exc:  # a bug: say so, never loop on it silently
            self.log.exception("[%s] unexpected error", self.name)
            self._give_up(f"{self.name}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self._close()

    def _renew_producer(self) -> None:
        """A registered transactional producer with this runner's id in place of the current one
        (if any), which it fences; called between transactions only."""
        old, self._producer = self._producer, None
        if old is not None:
            old.close()
        self._producer = renew(self.settings, self._producer_options, self._stop.wait, self.name, self.stall_seconds)
        self.producers += 1

    def _records(self, messages: list[Message]) -> list[Received]:
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(Received.from_message(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                self._on_error(error)
        return records

    def _batch(self, records: list[Received]) -> None:
        """Decide, write and commit one batch; on failure abort it and make it come again."""
        try:
            batch = self.process(records, self.sleep)
        except Stopping:
            self._rewind(records)
            return
        try:
            self._commit(batch, records)
        except Stalled as stall:
            if not self._settle(stall, records):
                self._rewind(records)
                self.stuck += 1
                return
        except KafkaException as exc:
            error = exc.args[0]
            self.errors.append(error)
            if error.fatal():
                raise Fenced(self._fenced_message(error)) from exc
            self.log.warning("[%s] transaction of %d records aborted (%s); the batch comes again",
                             self.name, len(records), error.str())
            self._abort()
            self._rewind(records)
            self.stuck += 1
            self._stop.wait(0.2 if error.txn_requires_abort() else 1.0)
            return
        batch.on_commit()
        self.hooks.handled(self.group_id, batch.handled - batch.dead_lettered)
        if batch.dead_lettered:
            self.hooks.dead_lettered(self.group_id, batch.dead_lettered)
        if batch.retried:
            self.hooks.retried(self.group_id, batch.retried)
        with self._progress:
            self.processed += batch.handled
            self.skipped += batch.skipped
            self.dead_lettered += batch.dead_lettered
            self.transactions += 1
            self.failures.extend((received, _without_frames(error)) for received, error in batch.failures)
            self._progress.notify_all()

    def _commit(self, batch: Batch, records: list[Received]) -> None:
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        producer.begin_transaction()
        produce = producer.produce
        for topic, partition, key, value, headers in batch.outputs:
            try:
                produce(topic, value, key, -1 if partition is None else partition, headers=headers)
            except BufferError:  # the local queue is full
                self._produce(producer, Output(topic, partition, key, value, headers))
        offsets = [TopicPartition(topic, partition, end) for (topic, partition), end in _ends(records).items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                producer.commit_transaction(COMMIT_SECONDS)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or self._stop.is_set():
                    raise
                self.errors.append(exc.args[0])
                self.log.warning("[%s] commit attempt %d failed (%s)", self.name, attempt, exc.args[0].str())
        raise Stalled("commit_transaction", f"failed {COMMIT_ATTEMPTS} times with retriable errors")

    def _settle(self, stall: Stalled, records: list[Received]) -> bool:
        """After ``stall``: renew the producer (which settles the transaction the stalled one left
        open) and tell whether that transaction committed; only a stalled commit can have."""
        self.stalls += 1
        self.log.warning("[%s] %s; renewing the transactional producer", self.name, stall)
        self._renew_producer()
        if stall.call != "commit_transaction":
            return False
        assert self._consumer is not None
        committed = committed_through(self._consumer, _ends(records))
        self.log.info("[%s] the stalled commit %s", self.name, "had committed" if committed else "was aborted")
        return committed

    @staticmethod
    def _produce(producer: GuardedProducer, out: Output) -> None:
        """Write ``out`` once the local queue has room (partition -1: librdkafka's partitioner)."""
        while True:
            producer.poll(0.05)  # let the queue drain
            try:
                producer.produce(out.topic, out.value, out.key, -1 if out.partition is None else out.partition,
                                 headers=out.headers)
                return
            except BufferError:
                continue

    def _abort(self) -> None:
        """Abort the open transaction, asking again while the coordinator does not answer (say, it
        is moving), so the runner never reads on with a transaction of its own left open: a
        partition assigned next waits for every transaction open on its changelog (see
        ``restore_orders``), ours included. Gives up only when asked to stop (the broker then
        aborts it after ``transaction.timeout.ms``, or the next instance with this id at once)."""
        if self._producer is None:  # a renewal failed: no transaction of this runner is open
            return
        for attempt in itertools.count(1):
            try:
                self._producer.abort_transaction(COMMIT_SECONDS)
                return
            except Stalled as stall:  # a new producer's init_transactions aborts it instead
                self.stalls += 1
                self.log.warning("[%s] %s; renewing the transactional producer", self.name, stall)
                self._renew_producer()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():
                    raise Fenced(self._fenced_message(error)) from exc
                if error.code() == KafkaError._STATE:  # no transaction open (it failed before begin)
                    return
                self.log.warning("[%s] abort attempt %d: %s", self.name, attempt, error.str())
                if self._stop.wait(1.0):
                    return

    def _rewind(self, records: list[Received]) -> None:
        """Make each partition's first record of the batch its next one again."""
        assert self._consumer is not None
        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault((record.topic, record.partition), record.offset)
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # taken away meanwhile: its new owner reads it
                self.log.warning("[%s] could not rewind %s[%d] to %d: %s", self.name, topic, partition, offset,
                                 exc.args[0].str())

    def _fenced_message(self, error: KafkaError) -> str:
        return (f"{self.name}: transactional id {self.transactional_id!r} can no longer write ({error.str()}). "
                "Another processor instance with the same instance id has started (it fenced this one), or this "
                f"one stalled for longer than transaction.timeout.ms ({TRANSACTION_TIMEOUT_MS} ms). This instance "
                "stops; nothing it did not commit is visible. Give every running processor its own instance id "
                "(--instance-id or ORDER_SYSTEM_INSTANCE_ID) and restart this one if it should run.")

    def _give_up(self, why: str) -> None:
        self.fatal = why
        self.log.error("%s", why)
        self._stop.set()

    def _on_error(self, error: KafkaError) -> None:
        self.errors.append(error)
        if error.fatal():
            self._give_up(f"{self.name}: fatal consumer error: {error.str()}")
            return
        held = KAFKA_ERRORS.admit(self.name)
        if held is not None:
            self.log.warning("[%s] consumer error: %s%s", self.name, error.str(), KAFKA_ERRORS.note(held))

    def _close(self) -> None:
        self._closing = True  # the partitions are given up, but what was committed stays readable
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:
                self.log.exception("[%s] closing the consumer failed", self.name)
        if self._producer is not None:
            try:
                self._producer.flush(5)
            except (KafkaException, Stalled) as exc:  # fenced, fatal or stuck: nothing of ours is left to deliver
                self.log.info("[%s] producer closed: %s", self.name, exc)
            self._producer.close()
        self.log.info("[%s] closed", self.name)
        with self._progress:
            self._progress.notify_all()

    # ---- rebalances -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._prepare(consumer, partitions)
        self._assignment |= {(p.topic, p.partition) for p in partitions}
        self.log.info("[%s] assigned %s", self.name, _names(partitions))
        self.assigned.set()
        with self._progress:
            self._progress.notify_all()

    def _prepare(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Wait for stable committed offsets, then ``on_assign``; tried again while the broker
        does not answer (say, a leader moving), and the runner stops if it keeps failing: a
        partition is never processed without its state."""
        for attempt in range(1, PREPARE_ATTEMPTS + 1):
            try:
                # stable offsets: waits until no transaction with offsets for these partitions
                # is pending, so the state read next reflects everything those offsets cover
                consumer.committed(partitions, timeout=15)
                if self.on_assign is not None:
                    self.on_assign([(p.topic, p.partition) for p in partitions])
                return
            except Exception as exc:  # raised here it would escape from consume()
                self.log.warning("[%s] preparing %s failed (attempt %d of %d): %s", self.name, _names(partitions),
                                 attempt, PREPARE_ATTEMPTS, exc)
                if self._stop.wait(2.0 * attempt):  # asked to stop: nothing to report
                    return
                if attempt == PREPARE_ATTEMPTS:
                    self._give_up(f"{self.name}: could not prepare {_names(partitions)} (restore their state): "
                                  f"{exc}")
                    return

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.log.info("[%s] revoked %s", self.name, _names(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.log.warning("[%s] lost %s; their uncommitted records come again to their next owner", self.name,
                         _names(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._assignment.discard((p.topic, p.partition))
        if self.on_revoke is not None and partitions and not self._closing:
            self.on_revoke([(p.topic, p.partition) for p in partitions])
        with self._progress:
            self._progress.notify_all()


def _ends(records: list[Received]) -> dict[tuple[str, int], int]:
    """Each partition's position after the batch (consume() returns a partition's records in order)."""
    return {(record.topic, record.partition): record.offset + 1 for record in records}


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "(none)"


def _without_frames(error: Exception) -> Exception:
    """The exception without its tracebacks (nor those of its cause and context): a kept failure
    must not keep the frames it was raised through alive, and with them a whole batch."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error
