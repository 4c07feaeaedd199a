"""One ListOffsets round trip for many request threads that need a partition's end at once.

A read-your-writes check asks the broker for the last stable offset of a partition on every
request. Under load, dozens of request threads ask at the same moment; ``SharedEndOffsets``
lets them share queries without giving up freshness: a request is answered only by a query
that was SENT AFTER the request arrived, so what it learns is as recent as its own query would
have been. Requests that arrive while a query is in flight join the next one.

Queries run in one background thread, in rounds: a round takes every partition asked for since
the previous round started, asks for all of them in one admin call, and answers everyone who
joined it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from .lag import known, transient

ROUNDS_KEPT = 1000  # answers of recent rounds kept for waiters that wake late


class SharedEndOffsets:
    """Read_committed end offsets of ``topic``'s partitions, shared between request threads.

    ``admin()`` returns the admin client to ask with (it may be replaced after a failover);
    ``renew(client)`` is called with a client whose answer says the leadership is moving.
    """

    def __init__(self, topic: str, admin: Callable[[], AdminClient], renew: Callable[[AdminClient], None],
                 attempt_seconds: float = 2.0) -> None:
        self.topic, self._admin, self._renew, self.attempt_seconds = topic, admin, renew, attempt_seconds
        self.rounds = 0  # queries sent (requests served per query = requests / rounds)
        self._changed = threading.Condition()
        self._pending: set[int] = set()  # partitions asked for by requests waiting for the next round
        self._next = 1  # the round requests join now (it has not started)
        self._done = 0  # the last round answered
        self._answers: dict[int, dict[int, int | KafkaException]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"end-offsets-{topic}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(self.attempt_seconds + 2)

    def end_offsets(self, partitions: Iterable[int], timeout: float) -> dict[int, int]:
        """Each partition's last stable offset, from a query sent after this call began; raises
        ``KafkaException`` (retriable ``_TIMED_OUT`` when no round answered within ``timeout``, or
        the round's error for one of the partitions)."""
        wanted = set(partitions)
        with self._changed:
            joined = self._next
            self._pending |= wanted
            self._changed.notify_all()
            if not self._changed.wait_for(lambda: self._done >= joined or self._stopping, timeout) or self._stopping:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no end offsets of {self.topic} in time"))
            answers = self._answers.get(joined)
        if answers is None:  # woke later than ROUNDS_KEPT rounds: ask again
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"end offsets of {self.topic} were dropped"))
        ends = {}
        for partition in wanted:
            answer = answers[partition]
            if isinstance(answer, KafkaException):
                raise answer
            ends[partition] = answer
        return ends

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                joined, partitions = self._next, self._pending
                self._next, self._pending = joined + 1, set()
            answers = self._ask(partitions)
            with self._changed:
                self._answers[joined] = answers
                self._answers.pop(joined - ROUNDS_KEPT, None)
                self._done = joined
                self.rounds += 1
                self._changed.notify_all()

    def _ask(self, partitions: set[int]) -> dict[int, int | KafkaException]:
        admin = self._admin()  # held until every answer came: the handle must outlive its requests
        wanted = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in partitions}
        answers: dict[int, int | KafkaException] = {}
        try:
            futures = admin.list_offsets(wanted, request_timeout=self.attempt_seconds,
                                         isolation_level=IsolationLevel.READ_COMMITTED)
        except KafkaException as exc:
            return {p: exc for p in partitions}
        for tp, future in futures.items():
            try:
                answers[tp.partition] = known(future.result(timeout=self.attempt_seconds + 1).offset, tp)
            except KafkaException as exc:
                answers[tp.partition] = exc
            except Exception as exc:  # the future's own timeout: the broker did not answer in time
                answers[tp.partition] = KafkaException(KafkaError(KafkaError._TIMED_OUT, str(exc) or "timed out"))
        errors = [a.args[0] for a in answers.values() if isinstance(a, KafkaException)]
        if any(transient(e) for e in errors):
            self._renew(admin)  # a new client reads the cluster's metadata afresh
        return answers
