"""A transactional producer whose blocking calls never hold the runner for long: the hardening
composed around the loop in ``transactions.py``.

**Why.** After a broker dies, librdkafka's transactional calls can wait far past the timeout they
were given. ``send_offsets_to_transaction`` commits the offsets through the consumer group's
coordinator, which librdkafka looks up once and caches; when that broker is removed from the
cluster's metadata (it was fenced), the request waits for a broker connection to change state,
which may take minutes (librdkafka issues #5456 and #5511, open in 2.16). The cluster test saw
the order-processor sit there for 18 to 27 s after a coordinator's SIGKILL, although the cluster
had elected new coordinators within 3 to 6 s; every command waiting for a verdict waited with it.

**What.** ``GuardedProducer`` runs each blocking call of the transaction API in a helper thread
and waits at most ``STALL_SECONDS`` for it, whatever timeout librdkafka was given. A call that
does not return in time raises ``Stalled``, and the runner replaces the producer with a new one
of the same ``transactional.id`` (``renew``): a new client looks its coordinators up afresh, and
its ``init_transactions`` fences the stalled one and settles the transaction it left open (the
coordinator aborts it, or finishes a commit it had already begun). The stalled call returns in
its own time, in its own thread, to a producer nobody uses any more.

Only a stall in ``commit_transaction`` leaves the outcome open; ``committed_through`` then asks
the group's committed offsets, which say whether that transaction committed (offsets past the
batch) or not (offsets before it).
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from ..config import Settings

STALL_SECONDS = 3.0  # a transactional call that takes longer is abandoned with its producer
TRANSACTION_TIMEOUT_MS = 60_000  # the broker aborts a transaction left open longer (a hung instance)
# init_transactions waits, rightly, while the cluster elects a coordinator or gets its quorum back, and a
# new cluster creates its transaction log first: after this long it is logged, and still waited for ...
INIT_WARN_SECONDS = 15.0
INIT_PATIENCE_SECONDS = 90.0  # ... up to this long, when librdkafka's own timeout (30 s) was not honoured
INIT_ATTEMPTS = 5  # retriable init_transactions failures in a row before the runner gives up
T = TypeVar("T")
Call = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]  # the future of a call, the function, its arguments
log = logging.getLogger("order_system.kafka.renewal")
KAFKA_LOG = logging.getLogger("order_system.kafka")  # where every client's librdkafka lines go (config.py)


class ClientLog:
    """The ``logger`` of one guarded producer's librdkafka client. Once the producer is abandoned,
    what its client still says (above all ``Fatal transaction error ... fenced by newer producer
    instance``, its successor's doing) is the renewal working as designed: logged at INFO, marked,
    never at librdkafka's own CRITICAL, which reads as an outage."""

    def __init__(self) -> None:
        self.abandoned = False

    def log(self, level: int, message: str, *args: Any) -> None:  # confluent_kafka calls logger.log(...)
        if self.abandoned and level > logging.INFO:
            level, message = logging.INFO, "(abandoned producer, expected) " + message
        KAFKA_LOG.log(level, message, *args)


class Stalled(Exception):
    """A transactional call did not return within the stall bound; its producer is abandoned."""

    def __init__(self, call: str, detail: str) -> None:
        super().__init__(f"{call} {detail}")
        self.call = call


class GuardedProducer:
    """A transactional ``Producer`` whose blocking calls are bounded by ``stall_seconds``.

    ``produce`` and ``poll`` never block and go straight to the client. After ``Stalled`` the
    instance is abandoned: use ``renew`` for its successor.
    """

    serial = itertools.count(1)

    def __init__(self, settings: Settings, options: Mapping[str, Any], stall_seconds: float = STALL_SECONDS) -> None:
        self.stall_seconds = stall_seconds
        self.client_log = ClientLog()
        self.client = Producer(settings.producer_config(**{**options, "logger": self.client_log}))
        self.number = next(self.serial)
        # the calls run one at a time in a daemon thread: a stalled one must never keep the process from
        # exiting (a ThreadPoolExecutor's threads are joined at exit, whatever shutdown(wait=False) said)
        self._calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run_calls, name=f"{options.get('client.id', 'tx')}-calls",
                                        daemon=True)
        self._thread.start()
        self.produce = self.client.produce
        self.poll = self.client.poll

    @property
    def abandoned(self) -> bool:
        """Given up after a stall: its client's later lines are logged as expected (``ClientLog``)."""
        return self.client_log.abandoned

    def _run_calls(self) -> None:
        while (item := self._calls.get()) is not None:
            future, function, args = item
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def _submit(self, call: str, function: Callable[..., T], *args: Any) -> "Future[T]":
        if self.abandoned:
            raise Stalled(call, "was not called: this producer was abandoned")
        future: Future[T] = Future()
        self._calls.put((future, function, args))
        return future

    def _abandon(self, call: str, seconds: float) -> Stalled:
        self.client_log.abandoned = True
        self._calls.put(None)  # its thread ends when librdkafka lets the stalled call return
        return Stalled(call, f"did not return within {seconds:.1f}s")

    def _bounded(self, call: str, function: Callable[..., T], *args: Any) -> T:
        future = self._submit(call, function, *args)
        try:
            return future.result(self.stall_seconds)
        except FutureTimeout:
            raise self._abandon(call, self.stall_seconds) from None

    def init_transactions(self, timeout: float, stop: Callable[[float], bool] = lambda _: False) -> None:
        """Register this producer, waiting as long as the cluster needs (up to ``INIT_PATIENCE_SECONDS``,
        or until ``stop(0)`` says the runner stops). A slow registration is never abandoned for a new
        producer: its InitProducerId, answered late, would bump the epoch and fence that new producer
        (a restart of two of three nodes did exactly that, and the runner stopped as fenced)."""
        future = self._submit("init_transactions", self.client.init_transactions, timeout)
        began, warned = time.monotonic(), False
        while True:
            try:
                return future.result(1.0)
            except FutureTimeout:
                waited = time.monotonic() - began
                if waited >= INIT_PATIENCE_SECONDS or stop(0.0):
                    raise self._abandon("init_transactions", waited) from None
                if not warned and waited >= INIT_WARN_SECONDS:
                    warned = True
                    log.warning("init_transactions of producer %d has not returned after %.0fs; waiting for it",
                                self.number, waited)

    def begin_transaction(self) -> None:
        self.client.begin_transaction()  # local: it never waits for a broker

    def produce_waiting(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                        headers: list[tuple[str, bytes]] | None) -> None:
        """``produce``, waiting while librdkafka's local queue is full (partition None: the key decides)."""
        while True:
            try:
                self.client.produce(topic, value, key, -1 if partition is None else partition, headers=headers)
                return
            except BufferError:
                self.client.poll(0.05)  # let the queue drain

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        self._bounded("send_offsets_to_transaction", self.client.send_offsets_to_transaction, offsets, metadata,
                      timeout)

    def commit_transaction(self, timeout: float) -> None:
        self._bounded("commit_transaction", self.client.commit_transaction, timeout)

    def abort_transaction(self, timeout: float) -> None:
        self._bounded("abort_transaction", self.client.abort_transaction, timeout)

    def flush(self, timeout: float) -> int:
        return self._bounded("flush", self.client.flush, timeout)

    def close(self) -> None:
        """Stop the helper thread (an abandoned producer's thread ends with its call)."""
        if not self.abandoned:
            self._calls.put(None)
            self._thread.join()  # it holds the client while it runs: the client goes with this producer


def renew(settings: Settings, options: Mapping[str, Any], stop: Callable[[float], bool], name: str,
          stall_seconds: float = STALL_SECONDS) -> GuardedProducer:
    """A registered transactional producer: ``init_transactions`` fences every older producer with
    this ``transactional.id`` (a stalled one of ours included) and settles its open transaction.

    A retriable error is tried again with a new producer after a pause, up to ``INIT_ATTEMPTS`` times
    in a row; the failed one is destroyed first, so that it cannot register late and fence its
    successor. ``stop(seconds)`` waits and returns True when the runner is asked to stop (then the
    last error is raised). Raises ``Stalled`` when a registration outlasts ``INIT_PATIENCE_SECONDS``."""
    failures = 0
    while True:
        producer = GuardedProducer(settings, options, stall_seconds)
        try:
            producer.init_transactions(30, stop)
            return producer
        except KafkaException as exc:
            error = exc.args[0]
        producer.close()
        # destroy librdkafka's client before the next one registers: the failed call's traceback holds
        # the producer in a reference cycle, so dropping the name alone would leave that to a later GC
        del producer
        gc.collect()
        failures += 1
        if not error.retriable() or failures >= INIT_ATTEMPTS or stop(1.0 * failures):
            raise KafkaException(error)
        log.warning("[%s] init_transactions failed (attempt %d): %s", name, failures, error.str())


def committed_through(consumer: Consumer, ends: Mapping[tuple[str, int], int], timeout: float = 10.0) -> bool:
    """Whether the group's committed offsets reached ``ends`` (the positions after a batch) on
    every partition: after a stalled ``commit_transaction`` was settled, True means it committed
    and False that it was aborted. Raises ``KafkaException`` when the offsets disagree with both
    (partitions moved to another member meanwhile): the runner then stops rather than guess."""
    partitions: Sequence[TopicPartition] = [TopicPartition(topic, p) for topic, p in ends]
    committed = consumer.committed(list(partitions), timeout=timeout)
    reached = {tp.offset >= ends[(tp.topic, tp.partition)] for tp in committed}
    if len(reached) != 1:
        raise KafkaException(KafkaError(KafkaError._STATE, f"committed offsets {committed} are partly past the batch"))
    return reached.pop()


def settle(stall: Stalled, consumer: Consumer, ends: Mapping[tuple[str, int], int], renew_producer: Callable[[], None],
           log: logging.Logger, name: str) -> bool:
    """What the runner does after ``stall``: renew its producer (``renew_producer``), which settles
    the transaction the stalled one left open, and tell whether that transaction committed (its
    offsets reached ``ends``); only a stalled commit can have."""
    log.warning("[%s] %s; renewing the transactional producer", name, stall)
    renew_producer()
    if stall.call != "commit_transaction":
        return False
    committed = committed_through(consumer, ends)
    log.info("[%s] the stalled commit %s", name, "had committed" if committed else "was aborted")
    return committed


def abort_open(producer: GuardedProducer | None, timeout: float, stop: Callable[[float], bool], log: logging.Logger,
               name: str) -> None:
    """Abort the open transaction, asking again while the coordinator does not answer (say, it is
    moving), so that a runner never reads on with a transaction of its own left open: a partition
    assigned next waits for every transaction open on its changelog, ours included. Gives up only
    when ``stop(seconds)`` says the runner is asked to stop (the broker aborts the transaction after
    ``transaction.timeout.ms``, or the next instance with this id at once). ``producer`` None: a
    renewal failed, so no transaction of ours is open. Raises ``Stalled``, and ``KafkaException``
    for a fatal error."""
    if producer is None:
        return
    while True:
        try:
            producer.abort_transaction(timeout)
            return
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                raise
            if error.code() == KafkaError._STATE:  # no transaction open (it failed before begin)
                return
            log.warning("[%s] abort failed: %s", name, error.str())
            if stop(1.0):
                return


def fenced_message(name: str, transactional_id: str, error: KafkaError) -> str:
    """What a runner whose producer can no longer write says, and what the operator should do."""
    return (f"{name}: transactional id {transactional_id!r} can no longer write ({error.str()}). "
            "Another processor instance with the same instance id has started (it fenced this one), or this "
            f"one stalled for longer than transaction.timeout.ms ({TRANSACTION_TIMEOUT_MS} ms). This instance "
            "stops; nothing it did not commit is visible. Give every running processor its own instance id "
            "(--instance-id or ORDER_SYSTEM_INSTANCE_ID) and restart this one if it should run.")
