"""Asking the broker where partitions end and how far a group has committed, through failovers.

- ``watermarks``, ``end_offsets``: a partition's ends (the last stable offset, which a
  read_committed reader stops at, and the high watermark);
- ``OffsetQueries``: the queries a view of ``order-state`` makes from request threads, each
  asked again in short attempts while a leader or a group coordinator moves (``transient``);
- ``SharedEndOffsets``: one ListOffsets round trip for many request threads at once.

Every query is bounded by its caller's timeout; an answer of "no offset yet" (a new leader whose
high watermark has not caught up) counts as "ask again" (``known``), never as a number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ..config import Settings
from .topics import admin_client, partition_count

T = TypeVar("T")
RETIRED_SECONDS = 60.0  # how long a replaced admin client is kept alive (see OffsetQueries.renew)
ATTEMPT_SECONDS = 2.0  # one query; a longer wait is made of several


# errors a broker answers while a partition's leader is being chosen (a new topic, a failover);
# librdkafka does not flag them retriable when they come from an offsets query. _NOENT is the
# admin client's "No leaders found" for a topic whose leaders its metadata does not know yet.
LEADERSHIP_SETTLING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                                 KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.FENCED_LEADER_EPOCH,
                                 KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.OFFSET_NOT_AVAILABLE,
                                 KafkaError._NOENT})
# worth asking again: the above, a request that timed out, a connection lost (a broker killed
# while it had the request), or a group coordinator moving to another broker
TRANSIENT = LEADERSHIP_SETTLING | {KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_COORDINATOR,
                                   KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}


def transient(error: KafkaError) -> bool:
    """Whether a failed query should be asked again (within its caller's bound)."""
    return error.retriable() or error.code() in TRANSIENT


def known(offset: int, tp: TopicPartition) -> int:
    """``offset``, or a retriable error when it is none (-1001): a new leader whose high watermark
    has not caught up yet answers no offset, and taken as a number it ends a wait too early."""
    if offset < 0:
        raise KafkaException(KafkaError(KafkaError.OFFSET_NOT_AVAILABLE,
                                        f"no offset of {tp.topic}[{tp.partition}] yet (a new leader catching up)"))
    return offset


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """The partition's (low, high) watermarks, asked again while its leadership settles."""
    def ask() -> tuple[int, int]:
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
        return known(low, tp), known(high, tp)
    return retrying(ask, timeout)


def retrying(call: Callable[[], T], timeout: float) -> T:
    """``call()``, again while it fails with a retriable Kafka error (such as NOT_LEADER just after a
    topic was created or a leader moved), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not transient(exc.args[0]) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)  # leadership settles on the broker; there is no event to wait on


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: (last stable offset, high watermark). A read_committed reader
    stops at the first, a read_uncommitted one at the second; the first is lower while a
    transaction is open on the partition."""
    admin = admin_client(settings)  # keep a reference: the futures die with the client
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partition_count(settings, topic))}

    def ask(level: IsolationLevel) -> dict[int, int]:
        futures = admin.list_offsets(wanted, isolation_level=level, request_timeout=timeout)
        return {tp.partition: known(future.result(timeout).offset, tp) for tp, future in futures.items()}

    # the high watermark first: a last stable offset asked for after it is below it only if a
    # transaction open then is still open
    high = retrying(lambda: ask(IsolationLevel.READ_UNCOMMITTED), timeout)
    stable = retrying(lambda: ask(IsolationLevel.READ_COMMITTED), timeout)
    return {p: (stable[p], high[p]) for p in sorted(high)}


class OffsetQueries:
    """End offsets and one group's committed offsets, asked from request threads.

    End offsets come from an admin client, which looks each partition's leader up again per
    request (a consumer handle keeps asking a dead leader until its metadata refresh, for 30 s);
    after a failover the client is replaced by a new one that reads the metadata afresh.
    Committed offsets come from a consumer handle of ``group`` that never subscribes, not the
    admin client: librdkafka's admin path for group offsets aborted the process on an assertion
    (``eonce->refcnt > 0`` in ``rd_kafka_admin_coord_response_parse``) while the group's coordinator
    moved. The handle is closed only once no request thread is inside a call on it.
    """

    def __init__(self, settings: Settings, group: str) -> None:
        self.settings = settings
        self.admin = AdminClient(settings.client_config())
        self._lock = threading.Condition()
        self._retired: list[tuple[float, AdminClient]] = []  # replaced admin clients, kept alive a while
        self._renewed = 0.0  # when the admin client was last replaced (monotonic)
        self._group = Consumer(settings.client_config(**{  # read_committed: stable offsets only
            "group.id": group, "enable.auto.commit": False, "isolation.level": "read_committed"}))
        self._calls = 0  # request threads inside a call on _group
        self.closed = False

    def end_offset(self, topic: str, partition: int, timeout: float, committed_only: bool = True) -> int:
        """The partition's last stable offset (``committed_only=False``: its high watermark, records of
        open transactions counted), asked again in short attempts while leadership settles."""
        level = IsolationLevel.READ_COMMITTED if committed_only else IsolationLevel.READ_UNCOMMITTED
        deadline = time.monotonic() + timeout
        tp = TopicPartition(topic, partition)
        while True:
            attempt = min(ATTEMPT_SECONDS, max(0.1, deadline - time.monotonic()))
            admin = self.admin
            try:
                asked = admin.list_offsets({tp: OffsetSpec.latest()}, request_timeout=attempt, isolation_level=level)
                future = asked[tp]
                return known(_result(future, attempt + 1).offset, tp)
            except KafkaException as exc:
                if not transient(exc.args[0]) or time.monotonic() > deadline or self.closed:
                    raise
                self.renew(admin)
            time.sleep(0.1)  # leadership settles on the brokers; there is no event to wait on

    def renew(self, failed: AdminClient) -> None:
        """A client keeps the leader (and its epoch) it knew; after a failover a new one reads the
        cluster's metadata afresh (at most once a second). A replaced client stays referenced for
        a minute, far longer than any call on it lasts: other request threads may still be inside
        one, and destroying a librdkafka handle under them crashes the process."""
        now = time.monotonic()
        with self._lock:
            if self.admin is not failed or now - self._renewed < 1.0:
                return
            self._retired = [(when, client) for when, client in self._retired if now - when < RETIRED_SECONDS]
            self._retired.append((now, failed))
            self.admin, self._renewed = AdminClient(self.settings.client_config()), now

    def committed(self, topic: str, partition: int, timeout: float) -> int:
        """The group's committed offset on the partition (-1: none, or not known yet while its
        coordinator or a leader moves); stable only (an offset in an open transaction is waited out)."""
        with self._lock:
            if self.closed:
                raise KafkaException(KafkaError(KafkaError._STATE, "the offset queries are closed"))
            self._calls += 1
        try:
            tp, = self._group.committed([TopicPartition(topic, partition)], timeout=timeout)
        except KafkaException as exc:
            if transient(exc.args[0]):
                return -1
            raise
        finally:
            with self._lock:
                self._calls -= 1
                self._lock.notify_all()
        if tp.error is not None:
            if transient(tp.error):
                return -1
            raise KafkaException(tp.error)
        return tp.offset if tp.offset >= 0 else -1

    def close(self, timeout: float = ATTEMPT_SECONDS + 2) -> None:
        with self._lock:
            self.closed = True
            idle = self._lock.wait_for(lambda: self._calls == 0, timeout)
        if idle:  # else left to the process: closing it under a call would crash
            self._group.close()


def _result(future: Future[Any], timeout: float) -> Any:
    """The admin call's answer; a client that did not answer in time is a retriable Kafka error
    (a timed-out wait raised here would otherwise escape the retry loops as a plain TimeoutError)."""
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "the admin client did not answer in time")) from None


# ---- one query for many request threads ---------------------------------------------------------

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
