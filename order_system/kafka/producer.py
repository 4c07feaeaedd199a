"""Publishing order events: keyed by order id, idempotent, asynchronous, in order per order.

``publish`` never waits for the broker: it hands the record to librdkafka and returns a
``Future`` that resolves to a ``Delivery`` (partition and offset) once the broker acknowledged
it, or fails with ``PublishError``. A small daemon thread serves librdkafka's delivery
callbacks while anything is in flight, so futures resolve even if the caller does nothing
else (``poll()`` and ``flush()`` serve them too). ``close()`` (or leaving the ``with`` block)
flushes.

**Order per order, through any outage.** With an ``outbox``, records with the same key (an
order's events) are chained: one is handed to librdkafka only once the previous one was
acknowledged; records of different keys still pipeline. If librdkafka let several records of
one key wait in its queue, a record that timed out while the broker was away could be
overtaken by a later one sent once the broker is back, and its resend would land after it.
A record that fails is kept in the outbox together with every record of its key waiting
behind it, and later records of that key go straight to the outbox behind them until
``resend_kept`` has delivered every kept record of the key (again chained, oldest first).
Nothing is remembered about a key once its last record was acknowledged. Without an outbox
nothing is ever sent again, so nothing can land behind a later record: records are pipelined
in publishing order and a failure only reaches the caller (the topic may then have a gap).

**Kept records belong to a cluster.** The producer learns the cluster id from the broker's
metadata and stores it with each kept row; ``resend_kept`` sends only the rows of the cluster
it is connected to.

Why a thread and not ``poll(0)`` after each ``produce``: that only serves callbacks while the
caller keeps publishing, so the last futures of a burst would hang in ``result()``. The thread
sleeps on a condition while nothing is in flight, so an idle producer costs nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, RUNNING
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from ..config import Settings
from ..domain.errors import PublishError
from ..domain.events import OrderEvent, OrderStatus, new_order_id
from .outbox import ANY_CLUSTER, ChainKey, Outbox, Resent

log = logging.getLogger("order_system.kafka.producer")
record_log = logging.getLogger("order_system.kafka.producer.records")  # a line per published record

_BUSY = 0.0005  # a publisher that published this recently serves the callbacks itself (see _serve_callbacks)
_POLL_EVERY = 16  # a busy publisher serves callbacks every so many publishes (poll() has a cost of its own)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int | None  # None: acknowledged without an offset (a retried send the broker had already stored)
    key: bytes | None
    event: OrderEvent | None = None


DeliveryCallback = Callable[["Delivery | None", "Exception | None"], None]


_FINAL = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class _Pending(Future):  # type: ignore[type-arg]
    """A ``Future`` that starts running (a produced record cannot be called back: no cancel())
    and shares its producer's Condition.

    ``Future()`` makes a Condition per future, and with it an RLock, a deque, two lists and
    bound methods: a burst of 100,000 publishes kept a million more objects alive for the
    garbage collector to walk again and again, most of what publishing cost. Here the lists
    are made only when used, and waiting loops until this future's own state is final
    (another future's completion wakes every waiter of the shared Condition).
    """

    _w: list[Any] | None = None
    _cb: list[Any] | None = None

    def __init__(self, condition: threading.Condition) -> None:  # noqa: no super().__init__ (the point)
        self._condition = condition
        self._state = RUNNING
        self._result = None
        self._exception = None

    @property
    def _waiters(self) -> list[Any]:  # concurrent.futures.wait/as_completed add theirs here
        if self._w is None:
            self._w = []
        return self._w

    @property
    def _done_callbacks(self) -> list[Any]:
        if self._cb is None:
            self._cb = []
        return self._cb

    def _wait(self, timeout: float | None) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._state in _FINAL, timeout)

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(0)

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with self._condition:
            if self._state in _FINAL:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, FINISHED
            for waiter in self._w or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._condition.notify_all()
        if self._cb:
            self._invoke_callbacks()


class _Record(_Pending):
    """One record on its way (what to send, whom to tell, its outbox row if it is a resend) and,
    for a publish, its own future: one object per record for the garbage collector, not two."""

    seq: int | None = None  # the outbox row this record re-sends
    chained = False  # sent only once the previous record of its key was acknowledged
    owner: OrderProducer | None = None  # set when dispatched: the record is its own delivery callback
    unkeepable = False  # sent before an outbox was attached: its bytes were let go
    _partition: int = -1  # where it landed; result() makes the Delivery when first asked
    _offset: int | None = -1

    def __init__(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None,
                 event: OrderEvent | None, on_delivery: DeliveryCallback | None, partition: int | None,
                 futures: threading.Condition | None, seq: int | None = None) -> None:
        """``futures``: the producer's Condition for a publish; None for a resent outbox row."""
        super().__init__(futures)  # type: ignore[arg-type]
        self.topic, self.key, self.value, self.headers = topic, key, value, headers
        self.event, self.on_delivery, self.partition = event, on_delivery, partition
        if seq is not None:
            self.seq = seq

    @property
    def future(self) -> _Record | None:
        """Itself for a publish; None for a resent outbox row (the relay counts those instead)."""
        return self if self._condition is not None else None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        assert self.owner is not None
        self.owner._delivered(self, error, message)

    def _landed(self, partition: int, offset: int | None) -> None:
        self._partition, self._offset = partition, offset
        self._finish(None, None)

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._result is None and self._partition >= 0:
            self._result = Delivery(self.topic, self._partition, self._offset, self.key, self.event)
        return Future.result(self, 0)

    @property
    def chain(self) -> ChainKey | None:
        return (self.topic, self.key) if self.key is not None else None

    @property
    def order_id(self) -> str | None:
        return self.event.order_id if self.event else None

    @property
    def label(self) -> str:
        return f"order {self.event.order_id}" if self.event else f"key {self.key!r}"


class OrderProducer:
    """Publishes events to the order topic; one instance can be shared by threads.

    With an ``outbox``, a record the broker did not acknowledge within the delivery timeout
    is kept there (and its future still fails), so nothing the user did is lost, and the
    records of the same order after it queue behind it (see the module docstring).
    """

    def __init__(self, settings: Settings, *, topic: str | None = None,
                 extra_config: Mapping[str, Any] | None = None, outbox: Outbox | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topic
        self.outbox: Outbox | None = None
        config = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "delivery.timeout.ms": 30_000,
            "client.id": "order-system-producer",
            **(extra_config or {}),
        }
        self._producer = Producer(settings.producer_config(**config))
        self._lock = threading.Condition()
        self._futures = threading.Condition()  # shared by the futures this producer returns (see _Pending)
        self._unresolved = 0  # records accepted whose future is not resolved yet
        self._chains: dict[ChainKey, deque[_Record]] = {}  # key -> records waiting behind the one in flight
        self._ready: deque[_Record] = deque()  # next of their chain, left for the callback thread
        self._held: dict[ChainKey, int] = {}  # key -> rows of it kept in the outbox
        self._acked_rows: list[int] = []  # outbox rows acknowledged, not yet deleted
        self._rows_sent = self._rows_done = self._rows_failed = 0  # the relay's current batch
        self._rows_blocked: set[ChainKey] = set()  # keys whose resent row failed in this resend
        self._cluster: str | None = None
        self._cluster_known = threading.Event()
        self._unclaimed: list[int] = []  # rows kept before the cluster id was known
        self._closed = False
        self._stopping = threading.Event()
        self._relaying = threading.Lock()
        self._local = threading.local()  # .polling: this thread is inside poll() (serving callbacks)
        self._last_publish = 0.0  # time.monotonic() of the latest publish
        self._publishes = 0
        self._poller = threading.Thread(target=self._serve_callbacks, name="producer-callbacks", daemon=True)
        self._poller.start()
        threading.Thread(target=self._learn_cluster, name="producer-cluster-id", daemon=True).start()
        if outbox is not None:
            self.attach_outbox(outbox)

    def attach_outbox(self, outbox: Outbox) -> None:
        """Keep undelivered records in ``outbox`` from now on (once, before publishing)."""
        if self.outbox is not None:
            raise PublishError(f"this producer already keeps records in {self.outbox.path}")
        with self._lock:
            self.outbox = outbox
            # until the cluster is known, every key kept for any cluster waits
            self._held = outbox.counts(self._cluster if self._cluster else ANY_CLUSTER)

    # ---- publishing ---------------------------------------------------------------------

    def publish(self, event: OrderEvent, *, keyed: bool = True, partition: int | None = None,
                on_delivery: DeliveryCallback | None = None, topic: str | None = None) -> Future[Delivery]:
        """Send ``event`` keyed by its order id (``keyed=False`` sends it without a key).

        ``partition`` overrides the key's partition (demonstrations only: it breaks ordering).
        """
        record = _Record(topic or self.topic, event.key() if keyed else None, event.to_json(), event.headers(),
                         event, on_delivery, partition, self._futures)
        self._submit(record)
        self._serve_inline()
        return record

    def publish_raw(self, value: bytes | None, *, key: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                    topic: str | None = None, partition: int | None = None,
                    on_delivery: DeliveryCallback | None = None) -> Future[Delivery]:
        """Send arbitrary bytes, optionally to a chosen partition (poison-record tests, tooling)."""
        record = _Record(topic or self.topic, key, value, headers, None, on_delivery, partition, self._futures)
        self._submit(record)
        self._serve_inline()
        return record

    def holds(self, order_id: str, topic: str | None = None) -> bool:
        """Whether an event of this order waits in the outbox (later ones would queue behind it)."""
        with self._lock:
            return (topic or self.topic, order_id.encode()) in self._held

    def _submit(self, record: _Record) -> None:
        chain = record.chain
        with self._lock:
            if self._closed:
                raise PublishError("the producer is closed")
            if record.seq is not None and chain in self._rows_blocked:  # an older row of its key failed
                self._row_done_locked(failed=True)
                return
            behind_kept = chain is not None and record.seq is None and chain in self._held
            if behind_kept:
                kept = self._keep_locked([record], "an earlier record with this key is kept in the outbox")
            else:
                self._unresolved += 1
                if self._unresolved == 1:  # the callback thread may be asleep: wake it
                    self._lock.notify_all()
            if not behind_kept and chain is not None and self.outbox is not None:
                record.chained = True
                if chain in self._chains:  # one of its key is in flight: wait behind it
                    self._chains[chain].append(record)
                    return
                self._chains[chain] = deque()
        if behind_kept:
            self._resolve_failed([record], "not sent: an earlier event of it waits in the outbox", kept)
            return
        self._dispatch(record, wait=True)

    def _dispatch(self, record: _Record, *, wait: bool) -> None:
        """Hand ``record`` to librdkafka. If its queue is full, wait (a publisher) or leave the
        record to the callback thread (inside a delivery callback, which must not block)."""
        record.owner = self
        while True:
            try:
                if record.partition is None:
                    self._producer.produce(record.topic, record.value, record.key, headers=record.headers,
                                           on_delivery=record)
                else:
                    self._producer.produce(record.topic, record.value, record.key, partition=record.partition,
                                           headers=record.headers, on_delivery=record)
                if self.outbox is None:  # nothing will be kept or sent again: librdkafka has its copy
                    record.value = record.headers = None  # (fewer objects alive for the GC to walk)
                    record.unkeepable = True
                return
            except BufferError:
                if not wait:
                    with self._lock:
                        self._ready.append(record)
                        self._lock.notify_all()
                    return
                self._producer.poll(0.1)  # let deliveries drain, then retry
            except Exception as exc:  # refused by the client itself (too large, bad partition, ...)
                log.error("librdkafka refused %s: %s", record.label, exc)
                self._failed(record, f"refused by the Kafka client: {exc}", keep=False)
                return

    def _delivered(self, record: _Record, error: KafkaError | None, message: Message) -> None:
        # Runs inside poll(); anything raised here would escape from poll() and kill the
        # callback thread, so the future is always resolved and user code is fenced off.
        if error is not None:
            log.error("Publish failed for %s: %s", record.label, error.str())
            self._failed(record, error.str(), keep=True)
            return
        with self._lock:
            self._unresolved -= 1
            following = self._next_locked(record.chain if record.chained else None)
            if record.seq is not None:
                self._acked_rows.append(record.seq)
                if record.chain is not None:
                    self._release_locked(record.chain)
                self._row_done_locked(failed=False)
        if following is not None:
            self._dispatch(following, wait=False)
        if record.future is None:
            return
        partition, offset = message.partition(), message.offset()
        if record_log.isEnabledFor(logging.INFO):
            event = record.event
            what = f"{event.event_type} for order {event.order_id}" if event else f"record {record.key!r}"
            record_log.info("Published %s -> partition %d, offset %s", what, partition, offset)
        record.value = record.headers = record.owner = None  # delivered: nothing to keep or resend
        record._landed(partition, offset)
        if record.on_delivery is not None:
            _notify(record.on_delivery, record.result(0), None)

    def _failed(self, record: _Record, reason: str, *, keep: bool) -> None:
        """``record`` was not delivered: it and every record waiting behind it fail; with an
        outbox (and ``keep``) the new ones among them are kept there, in order."""
        with self._lock:
            behind = list(self._chains.pop(record.chain, ())) if record.chained and record.chain else []
            self._unresolved -= 1 + len(behind)
            kept = False
            if keep and self.outbox is not None and not record.unkeepable:
                kept = self._keep_locked([r for r in [record, *behind] if r.seq is None], reason)
            for row in [r for r in [record, *behind] if r.seq is not None]:  # they stay in the outbox
                self._row_done_locked(failed=True)
                if row.chain is not None:
                    self._rows_blocked.add(row.chain)  # later rows of the key must not overtake it
        self._resolve_failed([record], f"was not delivered to {record.topic}: {reason}", kept)
        self._resolve_failed(behind, "not sent: an earlier event of it was not delivered", kept)

    def _resolve_failed(self, records: list[_Record], why: str, kept: bool) -> None:
        for record in records:
            if record.future is None:
                continue
            message = f"{record.label} {why}"
            if record.seq is not None:
                message += f"; it stays in the outbox {self.outbox.path if self.outbox else ''}"
            elif kept and self.outbox is not None:
                message += f"; kept in the outbox {self.outbox.path}"
            failure = PublishError(message, record.order_id)
            record.future.set_exception(failure)
            _notify(record.on_delivery, None, failure)

    def _next_locked(self, chain: ChainKey | None) -> _Record | None:
        """The record waiting behind ``chain``'s acknowledged one, or None (then the key is forgotten)."""
        if chain is None:
            return None
        waiting = self._chains.get(chain)
        if waiting:
            return waiting.popleft()
        self._chains.pop(chain, None)
        return None

    def _keep_locked(self, records: list[_Record], reason: str) -> bool:
        """Write ``records`` to the outbox (under the lock, so rows of a key keep their order)."""
        if not records:
            return True
        assert self.outbox is not None
        try:
            seqs = self.outbox.keep_many([(r.topic, r.key, r.value, r.headers, reason) for r in records], self._cluster)
        except Exception:
            log.exception("Could not keep %d record(s) in the outbox %s", len(records), self.outbox.path)
            return False
        if self._cluster is None:
            self._unclaimed.extend(seqs)
        for record in records:
            if record.chain is not None:
                self._held[record.chain] = self._held.get(record.chain, 0) + 1
        return True

    def _row_done_locked(self, failed: bool) -> None:
        self._rows_done += 1
        self._rows_failed += failed
        if self._rows_done >= self._rows_sent:
            self._lock.notify_all()

    def _release_locked(self, chain: ChainKey) -> None:
        left = self._held.get(chain, 0) - 1
        if left > 0:
            self._held[chain] = left
        else:
            self._held.pop(chain, None)  # every kept record of the key is delivered: it flows again

    # ---- the outbox, per cluster --------------------------------------------------------

    def _learn_cluster(self) -> None:
        """Ask the broker for its cluster id until it answers (or the producer closes)."""
        while not self._stopping.is_set():
            try:
                cluster = self._producer.list_topics(timeout=2.0).cluster_id
            except Exception:
                cluster = None
            if cluster:
                with self._lock:
                    self._cluster = cluster
                    if self.outbox is not None:
                        if self._unclaimed:
                            self.outbox.claim(self._unclaimed, cluster)
                        self._unclaimed = []
                        self._held = self.outbox.counts(cluster)
                self._cluster_known.set()
                log.info("Connected to Kafka cluster %s", cluster)
                return
            self._stopping.wait(1.0)

    def cluster_id(self, timeout: float = 15.0) -> str | None:
        """The id of the Kafka cluster this producer talks to; None if it has not answered yet."""
        self._cluster_known.wait(timeout)
        return self._cluster

    def has_kept(self) -> bool:
        """Whether rows of this producer's cluster wait in the outbox."""
        return self.outbox is not None and self._cluster is not None and self.outbox.count(self._cluster) > 0

    def resend_kept(self, *, batch: int = 10_000, timeout: float = 120.0, adopt_unknown: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    stop: threading.Event | None = None) -> Resent:
        """Send the outbox rows of this producer's cluster again; each key's rows oldest first.

        Rows go out in batches, asynchronously, chained per key like live records; a row is
        deleted only once acknowledged. When a row fails (the broker went away again) the rows
        of its key stay, and the resend stops after the batch. ``adopt_unknown`` first ties rows
        of an unknown cluster (kept before any broker answered, or by an older version) to this one.
        ``stop`` ends the resend early (between batches, or while waiting for acknowledgements).
        """
        if self.outbox is None:
            raise PublishError("this producer has no outbox")
        outbox = self.outbox
        cluster = self.cluster_id()
        if cluster is None:
            raise PublishError(f"no Kafka cluster answered at {self.settings.bootstrap_servers}; nothing resent")
        with self._relaying, outbox.resending() as mine:
            if not mine:
                return self._report(cluster, 0, busy=True)
            if adopt_unknown:
                with self._lock:
                    outbox.adopt_unknown(cluster)
                    self._held = outbox.counts(cluster)
            with self._lock:
                self._rows_blocked = set()
            total, sent, after = outbox.count(cluster), 0, 0
            while True:
                rows = outbox.pending(cluster, after=after, limit=batch)
                if not rows:
                    break
                with self._lock:
                    self._rows_sent, self._rows_done, self._rows_failed = len(rows), 0, 0
                for row in rows:
                    self._submit(_Record(row.topic, row.key, row.value, row.headers, None, None, None, None, row.seq))
                finished = self._wait_rows(timeout, stop)
                with self._lock:
                    failed = self._rows_failed
                sent += self._remove_acked()
                if progress:
                    progress(sent, total)
                if failed or not finished or (stop is not None and stop.is_set()):
                    break
                after = rows[-1].seq
            with self._lock:  # counts from the rows themselves, now that every ack is applied
                if not self._chains and self._unresolved == 0 and not self._acked_rows:
                    self._held = outbox.counts(cluster)
            return self._report(cluster, sent)

    def _wait_rows(self, timeout: float, stop: threading.Event | None) -> bool:
        """Wait until every row of the batch was acknowledged or failed; False on timeout or stop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._rows_done < self._rows_sent:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._lock.wait(min(remaining, 0.2))
        return True

    def _remove_acked(self) -> int:
        with self._lock:
            acked, self._acked_rows = self._acked_rows, []
        if acked and self.outbox is not None:
            self.outbox.remove_many(acked)
        return len(acked)

    def _report(self, cluster: str, sent: int, busy: bool = False) -> Resent:
        assert self.outbox is not None
        per_cluster = self.outbox.clusters()
        others = sum(n for c, n in per_cluster.items() if c not in (cluster, None))
        return Resent(cluster, sent, per_cluster.get(cluster, 0), others, per_cluster.get(None, 0), busy)

    # ---- lifecycle ----------------------------------------------------------------------

    def _serve_inline(self) -> None:
        """Serve the delivery callbacks that are due, in the publishing thread (not from a
        callback), every ``_POLL_EVERY`` publishes or when the last one was a while ago."""
        now = time.monotonic()
        self._publishes += 1
        if self._publishes % _POLL_EVERY and now - self._last_publish < _BUSY:
            self._last_publish = now
            return
        self._last_publish = now
        local = self._local
        if not getattr(local, "polling", False):
            local.polling = True
            try:
                self._producer.poll(0)
            finally:
                local.polling = False

    def _serve_callbacks(self) -> None:
        self._local.polling = True  # a publish from a callback run here must not poll again
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._unresolved > 0 or self._closed)
                if self._closed and self._unresolved == 0:
                    return
            self._dispatch_ready()
            quiet = time.monotonic() - self._last_publish
            if quiet < _BUSY and not self._stopping.is_set():
                # A publisher is busy and serves callbacks between its records: polling here too
                # would hand the GIL back and forth with it for every acknowledgement.
                self._stopping.wait(_BUSY - quiet)
                continue
            self._producer.poll(0.01)

    def _dispatch_ready(self) -> None:
        while True:
            with self._lock:
                if not self._ready:
                    return
                record = self._ready.popleft()
            self._dispatch(record, wait=True)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks now (the background thread does it anyway); returns how many."""
        return self._producer.poll(timeout)

    @property
    def in_flight(self) -> int:
        """Records accepted and not resolved yet (in librdkafka or waiting behind their key)."""
        with self._lock:
            return self._unresolved

    @property
    def remembered_keys(self) -> int:
        """How many keys the producer tracks (one in flight, or kept): 0 once all is delivered."""
        with self._lock:
            return len(self._chains.keys() | self._held.keys())

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every accepted record; returns how many are still unresolved."""
        deadline = time.monotonic() + timeout
        while True:
            self._dispatch_ready()
            left = self.in_flight
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                return left
            self._producer.flush(min(remaining, 0.1))

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop; raises ``PublishError`` if records are still undelivered."""
        if self._closed:
            return
        remaining = self.flush(timeout)
        self._stopping.set()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self.outbox is not None:
            self._remove_acked()
        self._poller.join(timeout=5)
        if remaining:
            raise PublishError(f"{remaining} record(s) were still undelivered after {timeout:.0f}s")

    def __enter__(self) -> OrderProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _notify(callback: DeliveryCallback | None, delivery: Delivery | None, error: Exception | None) -> None:
    """Call the caller's ``on_delivery``; its bugs are logged, never raised into ``poll()``."""
    if callback is None:
        return
    try:
        callback(delivery, error)
    except Exception:
        log.exception("on_delivery callback %r raised", callback)


# ---- demo lifecycles ---------------------------------------------------------------------------

_HAPPY = (OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def plan_lifecycles(orders: int, *, customers: int = 10, interleave: bool = True, seed: int | None = None,
                    cancel_every: int = 5) -> list[OrderEvent]:
    """The events of ``orders`` full lifecycles, each order's events in version order.

    Every ``cancel_every``-th order is cancelled after CREATED or PAID instead of delivered.
    With ``interleave``, events of different orders are shuffled together (a fair random
    merge), the way real traffic arrives.
    """
    rng = random.Random(seed)
    lives: list[list[OrderEvent]] = []
    for n in range(orders):
        order_id = new_order_id() if seed is None else f"{rng.getrandbits(32):08x}"
        customer = f"customer-{n % customers}"
        statuses = list(_HAPPY)
        if cancel_every and n % cancel_every == cancel_every - 1:
            statuses = statuses[: rng.choice((1, 2))] + [OrderStatus.CANCELLED]
        lives.append([OrderEvent.for_status(s, order_id, customer, v) for v, s in enumerate(statuses, 1)])
    if not interleave:
        return [event for life in lives for event in life]
    merged: list[OrderEvent] = []
    queues = [list(reversed(life)) for life in lives]
    while queues:
        pick = rng.randrange(len(queues))
        merged.append(queues[pick].pop())
        if not queues[pick]:
            queues[pick] = queues[-1]
            queues.pop()
    return merged


def publish_lifecycles(producer: OrderProducer, orders: int, *, customers: int = 10, interleave: bool = True,
                       seed: int | None = None, cancel_every: int = 5, keyed: bool = True,
                       progress: Callable[[int, int], None] | None = None) -> list[Future[Delivery]]:
    """Publish ``orders`` lifecycles (see ``plan_lifecycles``); returns the delivery futures.

    ``progress(done, total)`` is called after each event is handed to the producer.
    """
    events = plan_lifecycles(orders, customers=customers, interleave=interleave, seed=seed,
                             cancel_every=cancel_every)
    futures = []
    for n, event in enumerate(events, 1):
        futures.append(producer.publish(event, keyed=keyed))
        if progress:
            progress(n, len(events))
    return futures
