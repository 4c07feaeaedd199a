"""Every order, read from ``order-state``: the read model each API instance and notebook holds.

``OrderView`` materialises the whole compacted changelog (read_committed, from the beginning,
``assign`` without a consumer group) into memory, so any instance answers any order, and
follows ``order-verdicts`` from the moment it starts, so a command can wait for the
processor's verdict on its own event.

Read-your-writes across instances, without any instance telling another anything:

1. ``catch_up(order_id)`` asks the broker for the last stable offset (LSO, the read_committed
   end) of the order's ``order-state`` partition, then waits until the view has read up to it.
   Whatever any processor committed before the call is then in the view. Concurrent requests
   share one query, sent after each of them arrived (``kafka/offsets.py``).
2. ``wait_processed(order_id)`` covers an order whose event was published but not processed
   yet: it samples the end of the order's ``order-events`` partition, waits until group
   ``order-processor`` has committed its offsets up to it (offsets and state are committed in
   one transaction), then until the view has read the state partition up to its high watermark
   sampled then. That last step matters: a transaction's commit markers reach its partitions one
   by one, after ``commit_transaction`` returned, so the offsets may be visible a moment before
   the state record is; the high watermark already counts the record, and the view reaches it
   only once the marker made it readable.

For the same reason a command that got an accepted verdict waits for the view to show the new
version (``wait_for_version``) before answering: the state marker is then written, so every
later ``catch_up``, on any instance, includes it.

Every wait is bounded; each returns False when its time ran out. Request threads ask the
broker through ``kafka/offsets.py`` (``OffsetQueries``: end offsets through an admin client, the
processor group's committed offsets through a consumer handle of that group that never
subscribes), never through the consumer the view's own thread reads with.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from ..config import Settings
from ..domain.changelog import Verdict, order_from_json
from ..domain.errors import InvalidEvent, StillProcessing, TopicError
from ..domain.events import OrderStatus
from ..domain.state_machine import Order
from ..kafka.offsets import ATTEMPT_SECONDS, OffsetQueries, SharedEndOffsets, transient
from ..kafka.partitioner import partition_for
from ..kafka.records import take_batch

log = logging.getLogger("order_system.state.view")

PROCESSOR_GROUP = "order-processor"
MAX_WAITING = 100_000  # commands that may wait for a verdict at once (each holds one small entry)
BATCH = 500
POLL_SECONDS = 0.1
COMMITTED_POLL_SECONDS = 0.05  # how often the group's committed offset is asked for while waiting
# librdkafka fetches ahead of the reader up to this many KiB (its default, 64 MiB, is reached only
# when the view starts on a long changelog, and malloc keeps that peak for good): 4 MiB is still
# thousands of state records ahead of a reader that takes 500 at a time
PREFETCH_KBYTES = 4096


class _Awaited:
    """A command's wait for the verdict on its event: set by the view's reading thread."""

    __slots__ = ("verdict", "arrived")

    def __init__(self) -> None:
        self.verdict: Verdict | None = None
        self.arrived = threading.Event()

    def arrive(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.arrived.set()


class OrderView:
    """All orders of ``order-state`` in memory, kept current by a background thread.

    Use as a context manager, or ``start()`` (which returns once everything committed before
    it was read) and ``stop()``.
    """

    def __init__(self, settings: Settings, processor_group: str = PROCESSOR_GROUP,
                 max_waiting: int = MAX_WAITING) -> None:
        self.settings, self.processor_group, self.max_waiting = settings, processor_group, max_waiting
        self.partitions = 0  # of order-state (and order-events): known once started
        self.records = 0  # order-state records read
        self.bad_records = 0  # records that were neither an order, a tombstone nor a verdict
        self._orders: dict[str, Order] = {}
        self._read_up_to: dict[int, int] = {}  # order-state partition -> next offset to read
        self._waiting: dict[str, _Awaited] = {}  # event ids a command waits on -> its verdict, once read
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._queries: OffsetQueries | None = None  # end offsets, and the processor group's committed offsets
        self._state_ends: SharedEndOffsets | None = None  # order-state's ends, one query for many requests

    # ---- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> OrderView:
        """Assign the topics, start reading, and return once the view holds every order
        committed before the call; ``TimeoutError`` if that takes longer than ``timeout``."""
        settings = self.settings
        self._started = time.monotonic()
        consumer = Consumer(_config(settings, **{"auto.offset.reset": "earliest", "fetch.wait.max.ms": 100}))
        # end offsets for request threads never come from this consumer: librdkafka's watermark
        # query on a handle a thread consumes from was seen to block
        self._queries = queries = OffsetQueries(settings, self.processor_group)
        self._state_ends = SharedEndOffsets(settings.state_topic, lambda: queries.admin, queries.renew, ATTEMPT_SECONDS)
        try:
            counts = self._partition_counts(consumer, timeout)
            if not counts[settings.state_topic] or not counts[settings.verdicts_topic]:
                raise TopicError(f"topics {settings.state_topic!r} and {settings.verdicts_topic!r} are needed; "
                                 "create them with `order-system topics create`")
            if len(set(counts.values())) != 1:
                raise TopicError(f"partition counts differ: {counts}; the order-processor writes each order "
                                 "to the same partition number of every topic, so they must be equal")
            self.partitions = counts[settings.state_topic]
            self._consumer = consumer
            # verdicts from their end now (a concrete offset, so none committed after this is missed)
            verdict_ends = [queries.end_offset(settings.verdicts_topic, p, timeout) for p in range(self.partitions)]
            consumer.assign([TopicPartition(settings.state_topic, p, OFFSET_BEGINNING) for p in range(self.partitions)]
                            + [TopicPartition(settings.verdicts_topic, p, end) for p, end in enumerate(verdict_ends)])
        except BaseException:
            self._consumer = None
            consumer.close()
            self._state_ends.stop()
            queries.close(1.0)
            raise
        self._thread = threading.Thread(target=self._run, name="order-view", daemon=True)
        self._thread.start()
        if not self.catch_up_all(timeout):
            self.stop()
            raise TimeoutError(f"the view did not read {settings.state_topic!r} to its end within {timeout:.0f}s")
        log.info("view of %s loaded: %d orders from %d records", settings.state_topic, len(self), self.records)
        return self

    def _partition_counts(self, consumer: Consumer, timeout: float) -> dict[str, int]:
        """Each topic's partition count (0: missing), waiting (bounded) for topics just created
        to reach the metadata."""
        names = (self.settings.topic, self.settings.state_topic, self.settings.verdicts_topic)
        deadline = time.monotonic() + timeout
        while True:
            topics = consumer.list_topics(timeout=timeout).topics
            counts = {name: len(topics[name].partitions) if name in topics and topics[name].error is None else 0
                      for name in names}
            if all(counts.values()) or time.monotonic() > min(deadline, self._started + 5.0):
                return counts
            time.sleep(0.2)  # metadata of a topic just created reaches the brokers by itself

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._state_ends is not None:
            self._state_ends.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._changed:
            self._changed.notify_all()
            self._release_waiting()
        if self._queries is not None:
            self._queries.close()

    def __enter__(self) -> OrderView:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the reading thread ------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        state = [TopicPartition(self.settings.state_topic, p) for p in range(self.partitions)]
        try:
            while not self._stopping.is_set():
                messages = take_batch(consumer, BATCH, POLL_SECONDS)
                positions = consumer.position(state)  # past commit markers too (librdkafka moves it on)
                changes = [change for change in map(self._decode, messages) if change is not None]  # outside the lock
                with self._changed:
                    for kind, key, value in changes:
                        if kind == "order":
                            self._orders[key] = value
                        elif kind == "gone":
                            self._orders.pop(key, None)
                        elif (awaited := self._waiting.get(key)) is not None:
                            awaited.arrive(value)
                    for tp in positions:
                        if tp.offset >= 0:
                            self._read_up_to[tp.partition] = tp.offset
                    self._changed.notify_all()
        except Exception:
            log.exception("the view stopped reading")
        finally:
            self._stopping.set()
            with self._changed:
                self._consumer = None
                self._release_waiting()
            consumer.close()

    def _decode(self, message: Message) -> tuple[str, str, Any] | None:
        """One record as ("order", id, Order), ("gone", id, None) for a tombstone, or ("verdict",
        eventId, Verdict); None for an error or a record that is none of these (counted)."""
        if message.error() is not None:
            log.warning("reading %s: %s", message.topic(), message.error())
            return None
        try:
            if message.topic() == self.settings.verdicts_topic:
                if not self._waiting:  # nobody waits for a verdict: not even decoded
                    return None
                verdict = Verdict.from_json(message.value())
                return ("verdict", verdict.event_id, verdict) if verdict.event_id else None
            self.records += 1
            if message.value() is None:  # a tombstone: the order is gone
                key = message.key()
                return ("gone", key.decode(errors="replace"), None) if key is not None else None
            order = order_from_json(message.value())
            return "order", order.order_id, order
        except InvalidEvent as exc:
            self.bad_records += 1
            if self.bad_records <= 10 or self.bad_records % 1000 == 0:
                log.warning("%s[%d]@%d skipped (%d so far): %s", message.topic(), message.partition(),
                            message.offset(), self.bad_records, exc)
            return None

    # ---- read-your-writes --------------------------------------------------------------------

    def partition_of(self, order_id: str) -> int:
        """The partition of ``order-events`` (and so of ``order-state``) that holds the order."""
        if not self.partitions:
            raise StillProcessing(order_id)
        return partition_for(order_id, self.partitions)

    def catch_up(self, order_id: str, timeout: float) -> bool:
        """Wait until the view read everything committed on the order's partition before now
        (whose commit marker reached the partition: see the module's docstring)."""
        return self._catch_up([self.partition_of(order_id)], timeout)

    def catch_up_all(self, timeout: float) -> bool:
        """``catch_up`` for every partition (a listing)."""
        return self._catch_up(list(range(self.partitions)), timeout)

    def _catch_up(self, partitions: list[int], timeout: float) -> bool:
        """Ask for the partitions' ends (a query shared with concurrent requests, sent after this
        call began), again while the leadership settles, then wait until the view read that far."""
        assert self._state_ends is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                ends = self._state_ends.end_offsets(partitions, max(0.1, deadline - time.monotonic()))
                break
            except KafkaException as exc:
                if not transient(exc.args[0]) or time.monotonic() > deadline:
                    log.warning("no end offset of %s within %.1fs: %s", self.settings.state_topic, timeout, exc)
                    return False
            if self._stopping.wait(0.1):  # leadership settles on the brokers
                return False
        return self._reach(ends, deadline - time.monotonic())

    def _reach(self, ends: dict[int, int], timeout: float) -> bool:
        """Wait until the view read each order-state partition up to its offset in ``ends``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._stopping.is_set() or all(self._read_up_to.get(p, 0) >= end for p, end in ends.items()),
                timeout=max(0.0, timeout)) and not self._stopping.is_set()

    def wait_processed(self, order_id: str, timeout: float) -> bool:
        """Wait until the order-processor committed every event published to the order's
        partition before now, and the view read what it wrote for them."""
        deadline = time.monotonic() + timeout
        partition, queries, events = self.partition_of(order_id), self._queries, self.settings.topic
        assert queries is not None
        try:
            end = queries.end_offset(events, partition, timeout)
            while max(queries.committed(events, partition, min(ATTEMPT_SECONDS, _left(deadline))), 0) < end:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.wait(min(COMMITTED_POLL_SECONDS, left)):
                    return False  # the broker holds the committed offset: nothing local to wait on
            written = queries.end_offset(self.settings.state_topic, partition, _left(deadline), committed_only=False)
        except KafkaException as exc:
            log.warning("could not tell whether %s processed partition %d: %s", self.processor_group, partition, exc)
            return False
        return self._reach({partition: written}, deadline - time.monotonic())

    def wait_for_version(self, order_id: str, version: int, timeout: float) -> bool:
        """Wait until the view holds the order at ``version`` or later (this process's own reads)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.version(order_id) >= version, timeout=timeout)

    # ---- verdicts ----------------------------------------------------------------------------

    def expect(self, order_id: str, event_id: str) -> None:
        """Keep the verdict on ``event_id`` when it arrives (call before publishing the event);
        ``StillProcessing`` when ``max_waiting`` commands wait already."""
        with self._changed:
            if len(self._waiting) >= self.max_waiting:
                log.warning("%d commands wait for a verdict; refusing new ones", len(self._waiting))
                raise StillProcessing(order_id)
            self._waiting[event_id] = _Awaited()
            if self._stopping.is_set():
                self._waiting[event_id].arrived.set()

    def verdict(self, event_id: str, timeout: float) -> Verdict | None:
        """The processor's verdict on an ``expect``-ed event, or None when none came within
        ``timeout``; either way the view forgets the event id.

        Each command waits on an event of its own, set only when its verdict is read: waiting on
        the view's shared condition, every command woke for every record batch the view read (at
        500 commands/s, 50 waiting commands woke 50 times per batch, one after the other)."""
        with self._changed:
            awaited = self._waiting.get(event_id)
        try:
            if awaited is None:
                return None
            awaited.arrived.wait(timeout)
            return awaited.verdict
        finally:
            self.forget(event_id)

    def _release_waiting(self) -> None:
        """No verdict comes any more (the view stops): every waiting command returns now (hold ``_changed``)."""
        for awaited in self._waiting.values():
            awaited.arrived.set()

    def forget(self, event_id: str) -> None:
        with self._changed:
            self._waiting.pop(event_id, None)

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    # ---- reads -------------------------------------------------------------------------------

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def version(self, order_id: str) -> int:
        order = self._orders.get(order_id)
        return order.version if order is not None else 0

    def __len__(self) -> int:
        return len(self._orders)

    def orders(self) -> list[Order]:
        with self._changed:
            return list(self._orders.values())

    def statuses(self) -> dict[str, OrderStatus]:
        return {order.order_id: order.status for order in self.orders()}

    def summaries(self, status: OrderStatus | None = None, customer_id: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """A page of orders (newest first, then by id) without their history, optionally filtered."""
        wanted: Callable[[Order], bool] = lambda o: ((status is None or o.status is OrderStatus(status))
                                                      and (customer_id is None or o.customer_id == customer_id))
        page = heapq.nsmallest(offset + limit, filter(wanted, self.orders()),
                               key=lambda o: (-o.created_at.timestamp(), o.order_id))[offset:]
        return [{"order_id": o.order_id, "customer_id": o.customer_id, "status": o.status.value, "version": o.version,
                 "created_at": o.created_at.isoformat(), "updated_at": o.updated_at.isoformat()} for o in page]


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A read_committed consumer that never joins a group (assign only) and never commits."""
    return settings.client_config(**{"group.id": f"order-view-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                                     "isolation.level": "read_committed",
                                     "queued.max.messages.kbytes": PREFETCH_KBYTES, **extra})
