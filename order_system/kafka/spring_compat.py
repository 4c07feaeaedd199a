"""Reading the Spring tutorial's events: what a Java service leaves out, filled in.

The original Spring Boot service writes, with Spring's JSON serializer,
``{"orderId": ..., "customerId": ..., "status": ..., "description": ..., "timestamp": "2024-01-15T10:30:00"}``
and a ``__TypeId__`` header naming its Java class. Such a record is read as follows (our own,
richer events are read as they are):

- a zone-less timestamp (a Java ``LocalDateTime``, as an ISO string or as Jackson 2's array
  ``[2024, 1, 15, 10, 30, 0]``) is taken to be in ``Settings.local_timezone`` (UTC unless
  ``ORDER_SYSTEM_LOCAL_TIMEZONE`` names another zone);
- a missing ``eventId`` is derived from where the record was first written: a UUID 5 of
  ``kafka:<topic>/<partition>/<offset>``. A record on a retry topic, or one replayed from the
  dead-letter topic, carries its first place in ``original-*`` (or ``dlt-original-*``) headers,
  so a redelivery gets the same id and is recognised as one;
- a missing ``version`` makes the event an ``UnversionedEvent``: its version is provisional (the
  status's place in the lifecycle, so that it still tells an order's events apart), and the
  order-processor replaces it with the order's next version (``assign_version``);
- the ``__TypeId__`` header names a Java class and is ignored: the value is read by its fields;
- fields this reader does not know are ignored, as Spring's deserializer ignores unknown
  properties (``OrderEvent`` does so for every reader); a known field must still be right.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ..domain.events import OrderEvent, OrderStatus, parse_value


class ConsumedRecord(Protocol):
    """What is read of a consumed record (``records.Received`` is one; this module needs no more)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...

    def header(self, name: str) -> str | None: ...


SPRING_TYPE_HEADER = "__TypeId__"
PROVISIONAL_VERSION: Mapping[OrderStatus, int] = {
    OrderStatus.CREATED: 1, OrderStatus.PAID: 2, OrderStatus.SHIPPED: 3, OrderStatus.DELIVERED: 4,
    OrderStatus.CANCELLED: 5,  # terminal and at most once per order: its own number
}
_ORIGIN = ("topic", "partition", "offset")
_MAX_TIMESTAMP_CHARS = 40


class UnversionedEvent(OrderEvent):
    """An event whose producer gave no version: ``version`` is provisional until assigned."""


def derived_event_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """The eventId of a record that carries none: fixed by where it was first written."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{topic}/{partition}/{offset}")


def origin(received: ConsumedRecord) -> tuple[str, int, int]:
    """Where the record was first written: its ``original-*`` (retry, replay) or ``dlt-original-*``
    headers when they are complete and well-formed, else its own topic, partition and offset."""
    for prefix in ("original-", "dlt-original-"):
        topic, partition, offset = (received.header(prefix + name) or "" for name in _ORIGIN)
        if 0 < len(topic) <= 249 and _number(partition, 9) and _number(offset, 19):
            return topic, int(partition), int(offset)
    return received.topic, received.partition, received.offset


def _number(text: str, digits: int) -> bool:
    return 0 < len(text) <= digits and text.isascii() and text.isdecimal()


def _zoned(value: Any, zone: ZoneInfo) -> Any:
    """``value`` as an ISO timestamp with a zone when it is a zone-less one; else unchanged (the
    model then reports what is wrong with it)."""
    with suppress(ValueError, OverflowError):
        if isinstance(value, list) and 3 <= len(value) <= 7 and all(type(v) is int for v in value):
            fields = list(value) + [0] * (7 - len(value))
            return datetime(*fields[:6], fields[6] // 1000, tzinfo=zone).isoformat()  # Jackson 2 writes nanoseconds
        if isinstance(value, str) and len(value) <= _MAX_TIMESTAMP_CHARS and "T" in value:
            parsed = datetime.fromisoformat(value)
            return parsed.replace(tzinfo=zone).isoformat() if parsed.tzinfo is None else value
    return value


def _provisional(status: Any) -> int:
    try:
        return PROVISIONAL_VERSION[OrderStatus(status)]
    except (ValueError, TypeError):
        return 1  # the status is wrong anyway: the model names the problem


def read_event(received: ConsumedRecord, zone: str = "UTC") -> OrderEvent:
    """The record's event, in our format or the Spring tutorial's; ``InvalidEvent`` otherwise."""
    event = OrderEvent.from_wire(received.value)  # our own complete events: validated in one step
    if event is not None:
        return event
    parsed = parse_value(received.value)
    if "timestamp" in parsed:
        parsed["timestamp"] = _zoned(parsed["timestamp"], ZoneInfo(zone))  # ZoneInfo caches its zones
    if "eventId" not in parsed:
        parsed["eventId"] = str(derived_event_id(*origin(received)))
    if "version" not in parsed:
        parsed["version"] = _provisional(parsed.get("status"))
        return UnversionedEvent.from_fields(parsed)
    return OrderEvent.from_fields(parsed)


def assign_version(event: OrderEvent, history: Callable[[str], Sequence[OrderEvent]]) -> OrderEvent:
    """The order-processor's version for ``event``: an ``UnversionedEvent`` gets the version its
    event id was recorded with (a redelivery) or else the order's next one; others are unchanged.

    ``history(order_id)`` is the order's recorded events, oldest first.
    """
    if not isinstance(event, UnversionedEvent):
        return event
    recorded = history(event.order_id)
    version = next((e.version for e in recorded if e.event_id == event.event_id),
                   (recorded[-1].version if recorded else 0) + 1)
    return OrderEvent.model_construct(**{**dict(event), "version": version})
