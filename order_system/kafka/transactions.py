"""Exactly once: read a batch, write what it produced and its input offsets in ONE transaction.

``TransactionalRunner`` is one consumer of one group plus one transactional producer, in its own
thread. Per batch (the records already fetched, up to ``BATCH_SIZE``):

1. ``process(records, sleep)`` (pure, supplied by the caller) decides about every record and
   returns a ``Batch``: the records to write, and what to apply in memory once committed;
2. ``begin_transaction``; ``produce`` every output; ``send_offsets_to_transaction`` with the
   positions after the batch and ``consumer_group_metadata()`` (so a member of an older group
   generation, a zombie, cannot commit); ``commit_transaction``;
3. only then ``batch.on_commit()``: readers of the in-memory state never see an aborted batch.

On an abortable error the transaction is aborted, every partition of the batch is rewound to its
first record, and the batch is decided again from the committed state. Input is read
``read_committed`` with auto-commit off: offsets move only inside transactions. A fenced producer
(another instance started with the same ``transactional.id``) stops the runner with an error
naming the id and what to do.

What a batch is and what ``process`` returns: ``batches.py``. Composed around this loop:
``renewal.py`` (a transactional call that stalls is abandoned with its producer, whose successor
settles the transaction) and ``assignment.py`` (a partition's state is restored before its first
record). The runner keeps the surface of ``ConsumerRunner``, so
``run_groups``, notebooks and tests use either alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ..config import Settings
from .assignment import PartitionsCallback, StatefulAssignment
from .batches import Batch, Process, ends, rewind
from .records import Received, Stopping, take_batch, without_frames
from .renewal import STALL_SECONDS, TRANSACTION_TIMEOUT_MS, GuardedProducer, Stalled, abort_open, fenced_message
from .renewal import renew, settle
from .runner_thread import RunnerHooks, RunnerThread

# The transaction cadence: one transaction per batch, and a batch is what is already fetched,
# up to this many records. Under light load a batch is a few records and commits at once (no
# commit interval to wait out, unlike Kafka Streams' 100 ms); behind, batches grow and each
# transaction's fixed cost (AddOffsets, TxnOffsetCommit, EndTxn: ~10 ms here) is shared by more
# records: 100,000 events took 200 transactions and 2.9 s of commits at 500, 50 and 1.1 s at 2,000.
BATCH_SIZE = 2000
COMMIT_SECONDS = 10.0  # librdkafka's timeout for one commit or abort (the stall bound is shorter)
COMMIT_ATTEMPTS = 3  # a retriable commit failure is tried again this often; then its outcome is settled


class TransactionalRunner(RunnerThread):
    """One consumer and one transactional producer of one group, in their own thread."""

    def __init__(self, settings: Settings, group_id: str, transactional_id: str, process: Process, *,
                 topics: Sequence[str] | None = None, name: str | None = None,
                 on_assign: PartitionsCallback | None = None, on_revoke: PartitionsCallback | None = None,
                 extra_config: Mapping[str, Any] | None = None, producer_config: Mapping[str, Any] | None = None,
                 batch_size: int = BATCH_SIZE, stall_seconds: float = STALL_SECONDS,
                 hooks: RunnerHooks | None = None) -> None:
        """``on_assign(partitions)`` runs in the runner's thread for newly assigned partitions, before
        any of their records is processed (restore state there); ``on_revoke`` for partitions taken
        away or lost while running (forget it)."""
        super().__init__(name or group_id, hooks)
        self.settings, self.group_id, self.transactional_id = settings, group_id, transactional_id
        self.process, self.topics = process, list(topics or [settings.topic])
        self.batch_size, self.stall_seconds = batch_size, stall_seconds
        self.partitions = StatefulAssignment(self, on_assign, on_revoke)
        self.log = logging.getLogger(f"order_system.kafka.transactions.{self.name}")
        self._consumer_config = settings.client_config(**{
            "group.id": group_id, "client.id": self.name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,  # offsets are committed inside the transactions only
            "isolation.level": "read_committed",  # never read another transaction's uncommitted records
            "partition.assignment.strategy": "cooperative-sticky",
            # longer than a cluster takes to replace a dead group coordinator (about 6 s when it was
            # also the active controller): a shorter session loses the partitions to a rebalance
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500,
            # read ahead 4 MiB (thousands of records), not librdkafka's 64 MiB, whose peak malloc keeps
            "queued.max.messages.kbytes": 4096,
            **(extra_config or {}),
        })
        self._producer_options: dict[str, Any] = {
            "transactional.id": transactional_id, "client.id": f"{self.name}-tx",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
            # A transaction begun while the last one's commit markers are still being written is
            # refused with CONCURRENT_TRANSACTIONS, and librdkafka asks again after retry.backoff.ms:
            # 100 ms by default, which held one batch in 100 at 500 commands/s (verdict p90 106 ms).
            # The Java client waits 20 ms in that case (KAFKA-5477); 10 ms here, backing off from there.
            "retry.backoff.ms": 10,
            **(producer_config or {})}
        self.processed = self.skipped = self.dead_lettered = 0
        self.stuck = 0  # batches aborted and tried again
        self.transactions = 0  # committed transactions
        self.producers = 0  # transactional producers registered (a first one, then one per renewal)
        self.stalls = 0  # transactional calls abandoned after STALL_SECONDS
        self._consumer: Consumer | None = None
        self._producer: GuardedProducer | None = None

    # ---- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._renew_producer()
            self._consumer = consumer = Consumer(self._consumer_config)
            consumer.subscribe(self.topics, on_assign=self.partitions.assigned, on_revoke=self.partitions.revoked,
                               on_lost=self.partitions.lost)
            while not self._stop.is_set():
                records = self.received(take_batch(consumer, self.batch_size, 0.25))
                if records and not self._stop.is_set():  # asked to stop: they come again
                    self._batch(records)
        except Stalled as exc:  # a new producer's registration outlasted INIT_PATIENCE_SECONDS
            self.give_up(f"{self.name}: {exc}; the cluster gave no transactional producer an id")
        except KafkaException as exc:
            self.errors.append(exc.args[0])
            self.give_up(fenced_message(self.name, self.transactional_id, exc.args[0]) if exc.args[0].fatal() else
                         f"{self.name}: Kafka error: {exc.args[0].str()}")
        except Exception as exc:  # a bug: say so, never loop on it silently
            self.log.exception("[%s] unexpected error", self.name)
            self.give_up(f"{self.name}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self._close()

    def _batch(self, records: list[Received]) -> None:
        """Decide, write and commit one batch; on failure abort it and make it come again."""
        consumer = self._consumer
        assert consumer is not None
        try:
            batch = self.process(records, self.sleep)
        except Stopping:
            rewind(consumer, records, self.log, self.name)
            return
        try:
            self._transact(batch, records)
        except Stalled as stall:
            self.stalls += 1
            if not settle(stall, consumer, ends(records), self._renew_producer, self.log, self.name):
                rewind(consumer, records, self.log, self.name)
                self.stuck += 1
                return
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():  # fenced by a newer instance, or worse: the runner stops (_run)
                raise
            self.errors.append(error)
            self.log.warning("[%s] transaction of %d records aborted (%s); the batch comes again", self.name,
                             len(records), error.str())
            self._abort()
            rewind(consumer, records, self.log, self.name)
            self.stuck += 1
            self._stop.wait(0.2 if error.txn_requires_abort() else 1.0)
            return
        batch.on_commit()
        self._count(batch)

    def _transact(self, batch: Batch, records: list[Received]) -> None:
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        producer.begin_transaction()
        for output in batch.outputs:
            producer.produce_waiting(output.topic, output.value, output.key, output.partition, output.headers)
        offsets = [TopicPartition(topic, partition, end) for (topic, partition), end in ends(records).items()]
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

    def _abort(self) -> None:
        """Abort the open transaction before reading on (``renewal.abort_open``: asked again while
        the coordinator moves); a fatal error raises ``KafkaException``, which stops the runner."""
        try:
            abort_open(self._producer, COMMIT_SECONDS, self._stop.wait, self.log, self.name)
        except Stalled as stall:  # a new producer's init_transactions aborts it instead
            self.stalls += 1
            settle(stall, self._consumer, {}, self._renew_producer, self.log, self.name)  # type: ignore[arg-type]

    # ---- around the loop ------------------------------------------------------------------

    def _renew_producer(self) -> None:
        """A registered transactional producer with this runner's id in place of the current one
        (if any), which it fences; called between transactions only."""
        old, self._producer = self._producer, None
        if old is not None:
            old.close()
        self._producer = renew(self.settings, self._producer_options, self._stop.wait, self.name, self.stall_seconds)
        self.producers += 1

    def _count(self, batch: Batch) -> None:
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
            self.failures.extend((received, without_frames(error)) for received, error in batch.failures)
            self._progress.notify_all()

    def _close(self) -> None:
        self.partitions.closing = True  # the partitions are given up, but what was committed stays readable
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

