"""The wire format: ``OrderEvent`` and ``OrderStatus``.

Python code uses snake_case; the JSON on the wire uses camelCase, so that a producer in any
language can write valid events (the README documents the format).

Readers tolerate what they do not know, as Spring's JSON deserializer does: a field this
version does not know is ignored (in the event and in every object inside it), so a reader
built before a writer added an optional field still reads its events. Everything else holds as
before: the required fields are required, a known field of the wrong type or out of its bounds
refuses the event, and a value over ``MAX_VALUE_BYTES`` is refused before it is parsed
(``docs/failures-and-versions.md`` gives the upgrade order: readers first, then writers).

A CREATED event may carry the order's ``items`` (priced lines, ``domain/items.py``) and its
``total`` (their sum, ``domain/money.py``); no other status carries them. An event without
items is written exactly as before they existed: no ``"items": null``, no ``"total"``.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import Enum
from functools import cached_property
from typing import Annotated, Any

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo,
                      computed_field, field_validator)
from pydantic.alias_generators import to_camel
from pydantic_core import from_json as parse_json

from .errors import InvalidEvent
from .items import MAX_LINES, PricedLine, check_lines, order_total, total_problems
from .money import Money

CONTENT_TYPE = "application/json"

# Bounds of the wire format (the README's "Events on the wire" lists them).
MAX_VALUE_BYTES = 64 * 1024  # a record value above this is refused unparsed (the broker allows ~1 MB)
MAX_VERSION = 2**31 - 1  # a signed 32-bit int, as in Java
MAX_PROBLEMS = 10  # an InvalidEvent names at most this many field problems
_LINES_SCHEMA: dict[str, Any] = {"minItems": 1, "maxItems": MAX_LINES}  # items.py's bounds, checked by check_lines

# Short reasons an InvalidEvent carries, also used as dead-letter reasons.
EMPTY = "empty"
OVERSIZED = "oversized"
NOT_JSON = "not-json"
SCHEMA = "schema"
UNKNOWN_STATUS = "unknown-status"


class OrderStatus(str, Enum):
    """Where an order is in its life; the value is the string on the wire."""

    CREATED = "CREATED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


EVENT_TYPES: dict[OrderStatus, str] = {
    OrderStatus.CREATED: "OrderCreated",
    OrderStatus.PAID: "OrderPaid",
    OrderStatus.SHIPPED: "OrderShipped",
    OrderStatus.DELIVERED: "OrderDelivered",
    OrderStatus.CANCELLED: "OrderCancelled",
}

DEFAULT_DESCRIPTIONS: Mapping[OrderStatus, str] = {
    OrderStatus.CREATED: "Order placed; checking inventory",
    OrderStatus.PAID: "Payment confirmed",
    OrderStatus.SHIPPED: "Handed to the carrier",
    OrderStatus.DELIVERED: "Delivered to the customer",
    OrderStatus.CANCELLED: "Order cancelled",
}

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
_ID_ALPHABET = string.ascii_lowercase + string.digits
_REQUIRED_ON_WIRE = ("eventId", "timestamp")
_DEFAULTED_FIELDS = frozenset({"event_id", "timestamp"})  # have defaults in Python, never on the wire


def new_order_id() -> str:
    """A short, URL-safe order id such as ``k3f9a2xq`` (8 random lowercase letters and digits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


# ---- idempotent commands: a repeated Idempotency-Key makes the same ids ----------------------

_IDEMPOTENCY = uuid.UUID("6f1c2d8e-4b1a-5c3e-9d7f-0a2b4c6d8e10")  # a fixed namespace for uuid5


def keyed_order_id(customer_id: str, key: str) -> str:
    """The order id a create with ``key`` gets, the same each time for this customer and key
    (8 letters and digits, like ``new_order_id``)."""
    digest = int.from_bytes(hashlib.sha256(f"{customer_id}\x1f{key}".encode()).digest()[:8], "big")
    return "".join(_ID_ALPHABET[(digest >> (6 * n)) % len(_ID_ALPHABET)] for n in range(8))


def keyed_event_id(order_id: str, key: str) -> uuid.UUID:
    """The eventId a command on ``order_id`` with ``key`` gets, the same each time: a resent
    command is then a duplicate of the first (same version, same eventId), never a rival."""
    return uuid.uuid5(_IDEMPOTENCY, f"{order_id}\x1f{key}")


def _now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class _computed_once(cached_property):  # noqa: N801 (used like the decorator it extends)
    """``functools.cached_property`` without its lock (Python 3.11 takes one on every first
    access: 2 µs of the order-processor's 20 per event). An event is immutable, so two threads
    computing the same value at once is harmless; pydantic treats it as a cached property."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.attrname] = self.func(instance)
        return value


_FIELDS_GIVEN: dict[frozenset[str], set[str]] = {}  # at most one per subset of OrderEvent's eight fields


class OrderEvent(BaseModel):
    """One change of one order. Immutable; ``version`` counts the order's events from 1."""

    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True,
                              ignored_types=(_computed_once,))

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    order_id: Id
    customer_id: Id
    status: OrderStatus
    description: Annotated[str, Field(max_length=500)] = ""
    timestamp: datetime = Field(default_factory=_now)
    version: Annotated[int, Field(ge=1, le=MAX_VERSION, strict=True)]
    # One stored field, not two: ``total`` is computed from the lines. A ninth field would grow
    # every event's __dict__ past its first table size (272 to 464 bytes once encoded).
    items: Annotated[tuple[PricedLine, ...], Field(json_schema_extra=_LINES_SCHEMA)] | None = None

    def model_post_init(self, context: Any, /) -> None:
        # pydantic gives every instance its own set of the fields it was given: some 740 bytes
        # for seven, nearly half of what an event held in memory costs. Events given the same
        # fields share one set instead (never changed: the model is frozen, copies get their own)
        given = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__", _FIELDS_GIVEN.setdefault(frozenset(given), given))

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """Reject naive datetimes: a timestamp on the wire must say which time zone it is in."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone, e.g. 2026-11-24T10:15:30Z")
        return value

    @field_validator("items")
    @classmethod
    def _lines(cls, value: tuple[PricedLine, ...] | None, info: ValidationInfo) -> tuple[PricedLine, ...] | None:
        """One line per SKU, one currency, a total within bounds; on a CREATED event only."""
        if value is None:
            return None
        if info.data.get("status", OrderStatus.CREATED) is not OrderStatus.CREATED:
            raise ValueError("only a CREATED event carries items")
        check_lines(value)
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> Money | None:
        """The sum of ``items``' prices (None without items): written beside them, checked
        against them on read."""
        return None if self.items is None else order_total(self.items)

    # ---- one constructor per transition ---------------------------------------------

    @classmethod
    def for_status(cls, status: OrderStatus, order_id: str, customer_id: str, version: int,
                   description: str | None = None, event_id: uuid.UUID | None = None) -> OrderEvent:
        """An event moving ``order_id`` to ``status``; ``version`` is the new event's version
        (``event_id``: a chosen id, such as ``keyed_event_id``'s; default a random one)."""
        status = OrderStatus(status)
        return cls(order_id=order_id, customer_id=customer_id, status=status, version=version,
                   description=DEFAULT_DESCRIPTIONS[status] if description is None else description,
                   **({"event_id": event_id} if event_id is not None else {}))

    @classmethod
    def created(cls, order_id: str, customer_id: str, description: str | None = None,
                event_id: uuid.UUID | None = None) -> OrderEvent:
        """The first event of an order (always version 1)."""
        return cls.for_status(OrderStatus.CREATED, order_id, customer_id, 1, description, event_id)

    @classmethod
    def paid(cls, order_id: str, customer_id: str, version: int, description: str | None = None) -> OrderEvent:
        """The order was paid for; ``version`` is the previous version + 1."""
        return cls.for_status(OrderStatus.PAID, order_id, customer_id, version, description)

    @classmethod
    def shipped(cls, order_id: str, customer_id: str, version: int, description: str | None = None) -> OrderEvent:
        """The order left the warehouse; ``version`` is the previous version + 1."""
        return cls.for_status(OrderStatus.SHIPPED, order_id, customer_id, version, description)

    @classmethod
    def delivered(cls, order_id: str, customer_id: str, version: int, description: str | None = None) -> OrderEvent:
        """The customer received the order; ``version`` is the previous version + 1."""
        return cls.for_status(OrderStatus.DELIVERED, order_id, customer_id, version, description)

    @classmethod
    def cancelled(cls, order_id: str, customer_id: str, version: int, description: str | None = None) -> OrderEvent:
        """The order was cancelled; ``version`` is the previous version + 1."""
        return cls.for_status(OrderStatus.CANCELLED, order_id, customer_id, version, description)

    # ---- the wire ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready camelCase form."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> bytes:
        """The record value: UTF-8 JSON with camelCase keys and an ISO 8601 timestamp with offset."""
        return self._json

    @_computed_once
    def _json(self) -> bytes:
        # an event is immutable, so it is encoded once however often it is written (each state
        # record of the processor repeats its order's history)
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @_computed_once
    def id_text(self) -> str:
        """``str(event_id)``, made once: every record the processor writes for an event names it."""
        return str(self.event_id)

    @classmethod
    def from_json(cls, data: bytes | str | None) -> OrderEvent:
        """Parse a record value; raises ``InvalidEvent`` naming the field and the problem."""
        return cls.from_fields(parse_value(data))

    @classmethod
    def from_wire(cls, data: bytes | None) -> OrderEvent | None:
        """The event when ``data`` is a complete, valid event in our own format, validated
        straight from the bytes in one step (the fast path of every consumer); None for
        anything else, which ``from_json`` then explains (or a reader completes: the Spring
        tutorial's events leave fields out). Never accepts what ``from_json`` refuses."""
        if not isinstance(data, bytes) or not 0 < len(data) <= MAX_VALUE_BYTES:
            return None
        try:
            event = cls.model_validate_json(data, by_alias=True, by_name=False)
        except (ValueError, RecursionError):  # ValidationError included: the slow path names the problem
            return None
        # eventId and timestamp have defaults for Python callers; the wire must carry them
        if not _DEFAULTED_FIELDS <= event.model_fields_set:
            return None
        if event.items is not None or b'"total"' in data:  # rare: a total is checked against the items
            return None if total_problems(event.items, parse_json(data).get("total")) else event
        return event

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> OrderEvent:
        """Validate a parsed JSON object (camelCase keys); raises ``InvalidEvent``."""
        # Python callers may leave the id and timestamp to their defaults; the wire may not.
        problems = [f"{name}: Field required" for name in _REQUIRED_ON_WIRE if name not in fields]
        try:
            event = cls.model_validate(fields, by_alias=True, by_name=False)
        except ValidationError as exc:
            problems += [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()]
            unknown = any(e["loc"] == ("status",) and e["type"] == "enum" for e in exc.errors())
            raise _invalid(UNKNOWN_STATUS if unknown else SCHEMA, _listed(problems)) from exc
        if event.items is not None or fields.get("total") is not None:
            problems += total_problems(event.items, fields.get("total"))
        if problems:
            raise _invalid(SCHEMA, _listed(problems))
        return event

    # ---- Kafka record metadata ---------------------------------------------------------

    @property
    def event_type(self) -> str:
        """The ``event-type`` header value, e.g. ``OrderPaid``."""
        return EVENT_TYPES[self.status]

    def key(self) -> bytes:
        """The record key: the order id, so that all events of one order share a partition."""
        return self.order_id.encode()

    def headers(self) -> list[tuple[str, bytes]]:
        """The record headers: event type, event id and content type."""
        return [
            ("event-type", self.event_type.encode()),
            ("event-id", str(self.event_id).encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]


def parse_value(data: bytes | str | None) -> dict[str, Any]:
    """A record value as a JSON object, size and depth bounded; ``InvalidEvent`` otherwise.

    Values over ``MAX_VALUE_BYTES`` are refused before any parsing. The parser (pydantic's,
    written in Rust) refuses nesting deeper than 200 levels, numbers beyond 4300 digits,
    NaN and Infinity, and lone UTF-16 surrogates, each as an error, never a crash.
    """
    if data is None or len(data) == 0:
        raise _invalid(EMPTY, "empty value")
    size = len(data) if isinstance(data, bytes) else len(data.encode(errors="surrogatepass"))
    if size > MAX_VALUE_BYTES:
        raise _invalid(OVERSIZED, f"value of {size} bytes is over the limit of {MAX_VALUE_BYTES}")
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeError as exc:
        raise _invalid(NOT_JSON, f"not UTF-8 text ({exc})") from exc
    try:
        parsed = parse_json(text, allow_inf_nan=False)
    except (ValueError, RecursionError, OverflowError) as exc:
        raise _invalid(NOT_JSON, f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _invalid(SCHEMA, f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def _listed(problems: list[str]) -> str:
    """The first ``MAX_PROBLEMS`` problems, joined, and how many more there were."""
    more = len(problems) - MAX_PROBLEMS
    return "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def _invalid(reason: str, problem: str) -> InvalidEvent:
    """An ``InvalidEvent`` with the common message prefix and a reason code."""
    return InvalidEvent(f"invalid OrderEvent: {problem}", reason)
