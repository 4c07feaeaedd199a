"""Publishing order events: keyed by order id, idempotent, asynchronous.

``publish`` never waits for the broker: it hands the record to librdkafka and returns a
``Future`` that resolves to a ``Delivery`` (partition and offset) once the broker acknowledged
it, or fails with ``PublishError``. A small daemon thread serves librdkafka's delivery
callbacks while anything is in flight, so futures resolve even if the caller does nothing
else (``poll()`` and ``flush()`` serve them too). ``close()`` (or leaving the ``with`` block)
flushes.

Why a thread and not ``poll(0)`` after each ``produce``: that only serves callbacks while the
caller keeps publishing, so the last futures of a burst would hang in ``result()``. The thread
sleeps on a condition while nothing is in flight, so an idle producer costs nothing.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from .config import Settings
from .errors import PublishError
from .events import OrderEvent, OrderStatus, new_order_id
from .outbox import Kept, Outbox

log = logging.getLogger("order_system.producer")


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event: OrderEvent | None = None


DeliveryCallback = Callable[["Delivery | None", "Exception | None"], None]


class OrderProducer:
    """Publishes events to the order topic; one instance can be shared by threads.

    With an ``outbox``, a record the broker did not acknowledge within the delivery timeout
    is kept there (and the future still fails), so nothing the user did is lost.
    """

    def __init__(self, settings: Settings, *, topic: str | None = None,
                 extra_config: Mapping[str, Any] | None = None, outbox: Outbox | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topic
        self.outbox = outbox
        config = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "delivery.timeout.ms": 30_000,
            "client.id": "order-system-producer",
            **(extra_config or {}),
        }
        self._producer = Producer(settings.client_config(**config))
        self._in_flight = 0
        self._lock = threading.Condition()
        self._closed = False
        self._poller = threading.Thread(target=self._serve_callbacks, name="producer-callbacks", daemon=True)
        self._poller.start()

    # ---- publishing ---------------------------------------------------------------------

    def publish(self, event: OrderEvent, *, keyed: bool = True, partition: int | None = None,
                on_delivery: DeliveryCallback | None = None, topic: str | None = None) -> Future[Delivery]:
        """Send ``event`` keyed by its order id (``keyed=False`` sends it without a key).

        ``partition`` overrides the key's partition (demonstrations only: it breaks ordering).
        """
        return self._send(topic or self.topic, event.key() if keyed else None, event.to_json(),
                          event.headers(), event, on_delivery, partition)

    def publish_raw(self, value: bytes | None, *, key: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                    topic: str | None = None, partition: int | None = None,
                    on_delivery: DeliveryCallback | None = None) -> Future[Delivery]:
        """Send arbitrary bytes, optionally to a chosen partition (poison-record tests, tooling)."""
        return self._send(topic or self.topic, key, value, headers, None, on_delivery, partition)

    def publish_kept(self, kept: Kept) -> Future[Delivery]:
        """Send a record kept in the outbox again, exactly as it was (topic, key, value, headers)."""
        return self.publish_raw(kept.value, key=kept.key, headers=kept.headers, topic=kept.topic)

    def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None,
              event: OrderEvent | None, on_delivery: DeliveryCallback | None,
              partition: int | None = None) -> Future[Delivery]:
        if self._closed:
            raise PublishError("the producer is closed")
        future: Future[Delivery] = Future()
        future.set_running_or_notify_cancel()  # a produced record cannot be called back: no cancel()
        label = f"order {event.order_id}" if event else f"key {key!r}"
        order_id = event.order_id if event else None

        def delivered(error: KafkaError | None, message: Message) -> None:
            # Runs inside poll(); anything raised here would escape from poll() and kill the
            # callback thread, so the future is always resolved and user code is fenced off.
            self._done()
            if error is not None:
                failure = PublishError(f"{label} was not delivered to {topic}: {error.str()}", order_id)
                log.error("Publish failed for %s: %s", label, error.str())
                if self.outbox is not None:
                    try:
                        self.outbox.keep(topic, key, value, headers, error.str())
                        failure = PublishError(f"{failure}; kept in the outbox {self.outbox.path}", order_id)
                    except Exception:
                        log.exception("Could not keep %s in the outbox %s", label, self.outbox.path)
                future.set_exception(failure)
                _notify(on_delivery, None, failure)
                return
            delivery = Delivery(message.topic(), message.partition(), message.offset(), key, event)
            what = f"{event.event_type} for order {event.order_id}" if event else f"record {key!r}"
            log.info("Published %s -> partition %d, offset %d", what, delivery.partition, delivery.offset)
            future.set_result(delivery)
            _notify(on_delivery, delivery, None)

        with self._lock:
            self._in_flight += 1
            self._lock.notify_all()
        while True:
            try:
                placement = {} if partition is None else {"partition": partition}
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered, **placement)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self._producer.poll(0.1)
            except Exception:
                self._done()
                raise
        return future

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _serve_callbacks(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._in_flight > 0 or self._closed)
                if self._closed and self._in_flight == 0:
                    return
            self._producer.poll(0.05)

    # ---- lifecycle ----------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks now (the background thread does it anyway); returns how many."""
        return self._producer.poll(timeout)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every queued record; returns how many are still undelivered."""
        return self._producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop; raises ``PublishError`` if records are still undelivered."""
        if self._closed:
            return
        remaining = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
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
