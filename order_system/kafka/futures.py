"""What ``OrderProducer.publish`` returns: a ``Sending``, the ``Future`` of the record's ``Delivery``.

A ``Future`` per published record must cost the garbage collector little.

``concurrent.futures.Future()`` builds a ``threading.Condition`` of its own (a lock, a deque, bound
methods) and two lists. A burst of 100,000 publishes kept all of them alive until the broker
acknowledged the records, and the collector walked them again and again: once that was most of
what publishing cost (benchmarks/README.md). ``LightFuture`` shares one Condition with the other
futures of its producer and makes its two lists only when ``concurrent.futures.wait`` or
``add_done_callback`` asks for them. It sets the four attributes ``Future.__init__`` sets and
inherits everything else, so it is a ``Future`` to every caller: ``result``, ``exception``,
``done``, ``add_done_callback``, ``wait`` and ``as_completed`` work as usual
(tests/unit/test_delivery_future.py). Waits loop until this future's own ``done()``: another
future's completion wakes every waiter of the shared Condition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from ..domain.events import OrderEvent

log = logging.getLogger("order_system.kafka.producer")


class LightFuture(Future):  # type: ignore[type-arg]
    """A running ``Future`` (a record handed to librdkafka cannot be called back) on a shared Condition."""

    _w: list[Any] | None = None
    _cb: list[Any] | None = None

    def __init__(self, condition: threading.Condition) -> None:  # no super().__init__(): its Condition is the cost
        self._condition = condition
        self._state = "RUNNING"
        self._result = None
        self._exception: BaseException | None = None

    @property
    def _waiters(self) -> list[Any]:  # concurrent.futures.wait and as_completed add theirs here
        if self._w is None:
            self._w = []
        return self._w

    @property
    def _done_callbacks(self) -> list[Any]:
        if self._cb is None:
            self._cb = []
        return self._cb

    def result(self, timeout: float | None = None) -> Any:
        with self._condition:
            self._condition.wait_for(self.done, timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._condition:
            self._condition.wait_for(self.done, timeout)
        return super().exception(0)

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with self._condition:
            if self.done():
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, "FINISHED"
            for waiter in self._w or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._condition.notify_all()
        if self._cb:
            self._invoke_callbacks()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int | None  # None: acknowledged without an offset (a retried send the broker had already stored)
    key: bytes | None
    event: OrderEvent | None = None


DeliveryCallback = Callable[["Delivery | None", "Exception | None"], None]


class Publisher(Protocol):
    """The producer a record was handed to (``OrderProducer``): it turns librdkafka's report into the
    record's outcome."""

    def _delivered(self, record: Sending, error: KafkaError | None, message: Message) -> None: ...


class Sending(LightFuture):
    """One record on its way to the broker, and the ``Future`` of its ``Delivery`` (one object per
    record; librdkafka calls it back with the record's fate)."""

    def __init__(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None,
                 event: OrderEvent | None, partition: int | None, on_delivery: DeliveryCallback | None,
                 condition: threading.Condition) -> None:
        super().__init__(condition)
        self.topic, self.key, self.value, self.headers = topic, key, value, headers
        self.event, self.partition, self.on_delivery = event, partition, on_delivery
        self.owner: Publisher | None = None  # set when handed to librdkafka: the record is its own callback
        self._partition, self._offset = -1, None  # where it landed; result() makes the Delivery when first asked

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        assert self.owner is not None
        self.owner._delivered(self, error, message)

    @property
    def label(self) -> str:
        return f"order {self.event.order_id}" if self.event else f"key {self.key!r}"

    def landed(self, partition: int, offset: int | None) -> None:
        """The broker stored the record at ``offset`` of ``partition``: resolve the future."""
        self._partition, self._offset = partition, offset
        self.value = self.headers = self.owner = None  # delivered: nothing to keep
        self.set_result(None)
        if self.on_delivery is not None:
            notify(self.on_delivery, self.result(0), None)

    def result(self, timeout: float | None = None) -> Delivery:
        found = super().result(timeout)
        if found is None and self._partition >= 0:  # made once, when first asked (most never are)
            found = self._result = Delivery(self.topic, self._partition, self._offset, self.key, self.event)
        return found  # type: ignore[no-any-return]


def notify(callback: DeliveryCallback | None, delivery: Delivery | None, error: Exception | None) -> None:
    """Call the caller's ``on_delivery``; its bugs are logged, never raised into ``poll()``."""
    if callback is None:
        return
    try:
        callback(delivery, error)
    except Exception:
        log.exception("on_delivery callback %r raised", callback)
