"""Publishing order events keyed by order id: what the Spring tutorial's ``OrderProducer`` does.

    future = producer.publish(event)   # kafkaTemplate.send("order-events", event.orderId(), event)
    delivery = future.result()         # .whenComplete((result, ex) -> ...): partition and offset

``publish`` hands the record to librdkafka (``Producer.produce``: key the order id, value the
event's JSON) and returns a ``Future`` at once. It resolves to a ``Delivery`` once the broker
acknowledged the record on every in-sync replica (``acks=all``), or fails with ``PublishError``.
The producer is idempotent: librdkafka's retries never write a record twice nor reorder the
records of a partition, so the events of one order stay in the order they were published.

librdkafka reports deliveries only from inside ``poll()``: ``polling.py`` polls while anything is
in flight, so futures resolve even when the caller does nothing else. ``close()``, or leaving the
``with`` block, flushes.

What this core leaves out lives beside it: ``ordering.py`` (``OrderedProducer``: an order's next
event waits for the previous one's acknowledgement, and an event the broker did not acknowledge
is kept in an outbox and resent, in order) and ``spring_compat.py`` (the Java client's
partitioner, which ``Settings.producer_config`` selects).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from ..config import Settings
from ..domain.errors import PublishError
from ..domain.events import OrderEvent
from .futures import Delivery, DeliveryCallback, Sending, notify
from .polling import ServesDeliveries

log = logging.getLogger("order_system.kafka.producer")
record_log = logging.getLogger("order_system.kafka.producer.records")  # a line per published record


class OrderProducer(ServesDeliveries):
    """Publishes events to the order topic; one instance can be shared by threads."""

    record_type: type[Sending] = Sending
    keeps_bytes = False  # whether a record's bytes are kept after librdkafka took its copy (to resend them)

    def __init__(self, settings: Settings, *, topic: str | None = None,
                 extra_config: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topic
        self._producer = Producer(settings.producer_config(**{
            "enable.idempotence": True,  # a retried send is never written twice, nor reordered
            "acks": "all",  # acknowledged once every in-sync replica has it
            "linger.ms": 5,  # wait up to 5 ms to fill a batch
            "delivery.timeout.ms": 30_000,  # then the future fails
            "client.id": "order-system-producer",
            **(extra_config or {}),
        }))
        self._lock = threading.Condition()  # guards _unresolved and _closed; wakes the callback thread
        self._futures = threading.Condition()  # shared by the futures this producer returns (see Sending)
        self._unresolved = 0  # records accepted whose future is not resolved yet
        self._closed = False
        self._start_serving()  # a thread that polls for delivery reports (polling.py)

    # ---- publishing ---------------------------------------------------------------------

    def publish(self, event: OrderEvent, *, keyed: bool = True, partition: int | None = None,
                on_delivery: DeliveryCallback | None = None, topic: str | None = None) -> Future[Delivery]:
        """Send ``event`` keyed by its order id (``keyed=False`` sends it without a key).

        ``partition`` overrides the key's partition (demonstrations only: it breaks ordering).
        """
        return self._send(self.record_type(topic or self.topic, event.key() if keyed else None, event.to_json(),
                                           event.headers(), event, partition, on_delivery, self._futures))

    def publish_raw(self, value: bytes | None, *, key: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                    topic: str | None = None, partition: int | None = None,
                    on_delivery: DeliveryCallback | None = None) -> Future[Delivery]:
        """Send arbitrary bytes, optionally to a chosen partition (poison-record tests, tooling)."""
        return self._send(self.record_type(topic or self.topic, key, value, headers, None, partition, on_delivery,
                                           self._futures))

    def _send(self, record: Sending) -> Sending:
        self._accept(1)
        self._dispatch(record)
        self._serve_inline()
        return record

    def _accept(self, count: int) -> None:
        with self._lock:
            if self._closed:
                raise PublishError("the producer is closed")
            self._unresolved += count
            if self._unresolved == count:  # the callback thread may be asleep: wake it
                self._lock.notify_all()

    def _dispatch(self, record: Sending, *, wait: bool = True) -> bool:
        """Hand ``record`` to librdkafka (``produce``). With its queue full: wait while
        deliveries drain, or (``wait=False``, inside a callback, which must not block) return False."""
        record.owner = self
        while True:
            try:
                self._producer.produce(record.topic, record.value, record.key, -1 if record.partition is None
                                       else record.partition, headers=record.headers, on_delivery=record)
                if not self.keeps_bytes:  # librdkafka has its copy (fewer objects alive for the GC to walk)
                    record.value = record.headers = None
                return True
            except BufferError:
                if not wait:
                    return False
                self._producer.poll(0.1)
            except Exception as exc:  # refused by the client itself (too large, no such partition, ...)
                log.error("librdkafka refused %s: %s", record.label, exc)
                self._failed(record, f"refused by the Kafka client: {exc}", keep=False)
                return True

    def _delivered(self, record: Sending, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery callback, run inside ``poll()``: whatever happens, the future is
        resolved, and nothing raised here escapes into ``poll()``."""
        if error is not None:
            log.error("Publish failed for %s: %s", record.label, error.str())
            self._failed(record, error.str(), keep=True)
            return
        with self._lock:
            self._unresolved -= 1
        self._resolve(record, message.partition(), message.offset())

    def _resolve(self, record: Sending, partition: int, offset: int | None) -> None:
        if record_log.isEnabledFor(logging.INFO):
            event = record.event
            what = f"{event.event_type} for order {event.order_id}" if event else f"record {record.key!r}"
            record_log.info("Published %s -> partition %d, offset %s", what, partition, offset)
        record.landed(partition, offset)

    def _failed(self, record: Sending, reason: str, *, keep: bool) -> None:
        """``record`` was not delivered (``keep``: it might be, later; ``OrderedProducer`` keeps it)."""
        with self._lock:
            self._unresolved -= 1
        self._fail(record, f"{record.label} was not delivered to {record.topic}: {reason}")

    def _fail(self, record: Sending, message: str) -> None:
        failure = PublishError(message, record.event.order_id if record.event else None)
        record.set_exception(failure)
        notify(record.on_delivery, None, failure)

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Records accepted and not resolved yet."""
        with self._lock:
            return self._unresolved

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every accepted record; returns how many are still unresolved."""
        deadline = time.monotonic() + timeout
        while True:
            self._between_polls()
            left, remaining = self.in_flight, deadline - time.monotonic()
            if not left or remaining <= 0:
                return left
            self._producer.flush(min(remaining, 0.1))

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop; raises ``PublishError`` if records are still undelivered."""
        if self._closed:
            return
        remaining = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._after_close()
        self._poller.join(timeout=5)
        if remaining:
            raise PublishError(f"{remaining} record(s) were still undelivered after {timeout:.0f}s")

    def _after_close(self) -> None:
        """What a subclass finishes once nothing more is accepted."""

    def __enter__(self) -> OrderProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

