"""What a runner does when its group gives it partitions or takes them away: the ``on_assign``,
``on_revoke`` and ``on_lost`` callbacks of ``Consumer.subscribe``, run inside ``poll()``.

``Assignment`` keeps the runner's set of partitions, calls the runner's ``on_assign`` and
``on_revoke`` (the partitions as ``(topic, partition)``), logs each change and wakes whoever
waits on the runner. The consumer runner uses it as it is, and commits before a revocation.

The transactional runner's is ``StatefulAssignment``. A partition is never processed without
its state: before the first record of a newly assigned partition, it waits until the
partition's committed offsets are stable (no transaction with offsets for it still pending),
then calls ``on_assign`` (the order-processor restores the partition's orders from
``order-state`` there). Both are tried
again while the broker does not answer (say, a leader moving); the runner stops if it keeps
failing. A partition revoked or lost is forgotten (``on_revoke``); stopping the runner forgets
nothing, since what was committed stays readable.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from .records import names
from .runner_thread import RunnerThread

PREPARE_ATTEMPTS = 5  # tries to read a newly assigned partition's state before the runner gives up
PartitionsCallback = Callable[[list[tuple[str, int]]], None]


class Assignment:
    """The subscribe callbacks (``assigned``, ``revoked``, ``lost``) of a runner."""

    def __init__(self, owner: RunnerThread, on_assign: PartitionsCallback | None = None,
                 on_revoke: PartitionsCallback | None = None) -> None:
        self.owner, self.on_assign, self.on_revoke = owner, on_assign, on_revoke
        self.closing = False  # set when the runner stops: its partitions are given up, nothing forgotten

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owner = self.owner
        self._prepare(consumer, partitions)
        owner._assignment |= {(p.topic, p.partition) for p in partitions}
        owner.log.info("[%s] assigned %s", owner.name, names(partitions))
        owner.assigned.set()
        with owner._progress:
            owner._progress.notify_all()

    def _prepare(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_assign is not None:
            try:
                self.on_assign([(p.topic, p.partition) for p in partitions])
            except Exception:  # raised here it would escape from poll() and end the loop
                self.owner.log.exception("[%s] on_assign callback raised", self.owner.name)

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.owner.log.info("[%s] revoked %s", self.owner.name, names(partitions))

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.owner.log.warning("[%s] lost %s; their uncommitted records come again to their next owner",
                               self.owner.name, names(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        owner = self.owner
        for p in partitions:
            owner._assignment.discard((p.topic, p.partition))
        if self.on_revoke is not None and partitions and not self.closing:
            self.on_revoke([(p.topic, p.partition) for p in partitions])
        with owner._progress:
            owner._progress.notify_all()


class StatefulAssignment(Assignment):
    """``Assignment`` for a runner that keeps state: restored before a partition's first record."""

    def _prepare(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owner = self.owner
        if not partitions:
            return
        for attempt in range(1, PREPARE_ATTEMPTS + 1):
            try:
                # stable offsets: waits until no transaction with offsets for these partitions
                # is pending, so the state read next reflects everything those offsets cover
                consumer.committed(partitions, timeout=15)
                if self.on_assign is not None:
                    self.on_assign([(p.topic, p.partition) for p in partitions])
                return
            except Exception as exc:  # raised here it would escape from consume()
                owner.log.warning("[%s] preparing %s failed (attempt %d of %d): %s", owner.name, names(partitions),
                                  attempt, PREPARE_ATTEMPTS, exc)
                if owner._stop.wait(2.0 * attempt):  # asked to stop: nothing to report
                    return
                if attempt == PREPARE_ATTEMPTS:
                    owner.give_up(f"{owner.name}: could not prepare {names(partitions)} (restore their state): {exc}")
                    return
