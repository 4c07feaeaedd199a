"""What the order-processor writes, as records: pure Python, no I/O.

For each input event the processor writes, in one Kafka transaction:

- a **verdict** (topic ``order-verdicts``): accepted, duplicate or rejected (with a reason),
  so a reader can tell "rejected" from "not processed yet";
- when accepted, the order's new **state** (topic ``order-state``, compacted, key orderId):
  everything needed to answer GET, so the last record per key is the order;
- when accepted, its **effects** (topic ``order-effects``), one record each.

Each is written to the same partition number as the input record. The JSON uses camelCase
like the events; ``format`` lets a later version change the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import reduce
from typing import Any

from pydantic_core import to_json

from .errors import InvalidEvent
from .events import OrderEvent, parse_value
from .state_machine import Order

FORMAT = 1
BAD_STATE = "bad-state"  # an order-state record that is not an order
BAD_VERDICT = "bad-verdict"
MAX_DETAIL = 500  # characters of an error message a verdict keeps


@dataclass(frozen=True)
class Effect:
    """A side effect of handling one event, e.g. ``Effect("inventory-reserved", "1 unit")``."""

    kind: str
    detail: str


class Outcome(str, Enum):
    """What the processor decided about one input event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # already applied (same eventId): nothing changed
    REJECTED = "rejected"  # dead-lettered; ``reason`` says why


@dataclass(frozen=True)
class Verdict:
    """The processor's answer for one input record.

    ``event_id``, ``order_id``, ``version`` and ``status`` are None when the record could not
    be decoded; ``partition`` and ``offset`` say which input record it was.
    """

    outcome: Outcome
    partition: int
    offset: int
    event_id: str | None = None
    order_id: str | None = None
    version: int | None = None
    status: str | None = None
    reason: str | None = None
    detail: str | None = None
    event: OrderEvent | None = None  # the accepted event itself (notifications read it)

    @classmethod
    def of(cls, outcome: Outcome, event: OrderEvent, partition: int, offset: int,
           reason: str | None = None, detail: str | None = None) -> Verdict:
        return cls(outcome, partition, offset, event.id_text, event.order_id, event.version,
                   event.status.value, reason, detail[:MAX_DETAIL] if detail else None,
                   event if outcome is Outcome.ACCEPTED else None)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "format": FORMAT, "outcome": self.outcome.value, "partition": self.partition, "offset": self.offset,
            "eventId": self.event_id, "orderId": self.order_id, "version": self.version, "status": self.status,
            "reason": self.reason, "detail": self.detail,
        }
        return _dump(body, event=self.event.to_json() if self.event is not None else b"null")

    @classmethod
    def from_json(cls, data: bytes | None) -> Verdict:
        """Raises ``InvalidEvent`` (reason ``bad-verdict``) for anything else."""
        try:
            fields = parse_value(data)
            event = fields.get("event")
            return cls(
                Outcome(fields["outcome"]), int(fields["partition"]), int(fields["offset"]),
                _opt_str(fields.get("eventId")), _opt_str(fields.get("orderId")),
                int(fields["version"]) if fields.get("version") is not None else None,
                _opt_str(fields.get("status")), _opt_str(fields.get("reason")), _opt_str(fields.get("detail")),
                OrderEvent.from_fields(event) if event is not None else None,
            )
        except (InvalidEvent, KeyError, ValueError, TypeError) as exc:
            raise InvalidEvent(f"not a verdict: {exc}"[:1000], BAD_VERDICT) from exc


def verdict_to_json(outcome: Outcome, event: OrderEvent, partition: int, offset: int, reason: str | None = None,
                    detail: str | None = None) -> bytes:
    """``Verdict.of(outcome, event, ...).to_json()``, the same bytes, without building the
    verdict (the processor writes one per input record: formatted, not serialised from a dict)."""
    why = b'"reason":null,"detail":null' if reason is None and not detail else \
        to_json({"reason": reason, "detail": detail[:MAX_DETAIL] if detail else None})[1:-1]
    return b'{"format":%d,"outcome":"%s","partition":%d,"offset":%d,"eventId":"%s","orderId":%s,"version":%d,' \
           b'"status":"%s",%s,"event":%s}' % (
               FORMAT, outcome.value.encode(), partition, offset, event.id_text.encode(), to_json(event.order_id),
               event.version, event.status.value.encode(), why,
               event.to_json() if outcome is Outcome.ACCEPTED else b"null")


def order_to_json(order: Order) -> bytes:
    """An ``order-state`` record value: the order with its whole history, and its ``items`` and
    ``total`` when it has them (a copy of its CREATED event's, for readers of the record)."""
    history = order.history
    if order.items is not None:
        body: dict[str, Any] = {
            "format": FORMAT, "orderId": order.order_id, "customerId": order.customer_id,
            "status": order.status.value, "version": order.version, "lastEventId": history[-1].id_text,
            **_priced(order)}
        return _dump(body, history=b"[" + b",".join(event.to_json() for event in history) + b"]")
    # the common case formatted straight to bytes (the processor writes one per changed order per batch)
    return b'{"format":%d,"orderId":%s,"customerId":%s,"status":"%s","version":%d,"lastEventId":"%s",' \
           b'"history":[%s]}' % (
        FORMAT, to_json(order.order_id), to_json(order.customer_id), order.status.value.encode(), order.version,
        history[-1].id_text.encode(), b",".join([event.to_json() for event in history]))


def _priced(order: Order) -> dict[str, Any]:
    """The order's ``items`` and ``total`` as JSON-ready values (only those two fields serialised)."""
    return order.history[0].model_dump(mode="json", by_alias=True, include={"items", "total"})


def order_from_json(data: bytes | None) -> Order:
    """The order an ``order-state`` value holds, rebuilt from its history under the state
    machine, so a forged record cannot hold an impossible order. Raises ``InvalidEvent``
    (reason ``bad-state``)."""
    try:
        fields = parse_value(data)
        history = [OrderEvent.from_fields(item) for item in fields["history"]]
        if not history:
            raise ValueError("empty history")
        order = reduce(Order.apply, history[1:], Order.start(history[0]))
        if order.order_id != fields["orderId"] or order.version != fields["version"]:
            raise ValueError("orderId or version disagree with the history")
        if ("items" in fields or "total" in fields or order.items is not None) and \
                {k: fields.get(k) for k in ("items", "total")} != _priced(order):
            raise ValueError("items or total disagree with the history")
        return order
    except (InvalidEvent, KeyError, ValueError, TypeError) as exc:
        raise InvalidEvent(f"not an order state: {exc}"[:1000], BAD_STATE) from exc


def effect_to_json(event: OrderEvent, effect: Effect) -> bytes:
    """An ``order-effects`` record value."""
    return b'{"format":%d,"eventId":"%s","orderId":%s,"version":%d,"kind":%s,"detail":%s}' % (
        FORMAT, event.id_text.encode(), to_json(event.order_id), event.version, to_json(effect.kind),
        to_json(effect.detail))


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _dump(body: dict[str, Any], **encoded: bytes) -> bytes:
    """``body`` as compact JSON, with ``encoded`` fields (JSON already) appended as they are."""
    text = to_json(body)
    if not encoded:
        return text
    return text[:-1] + b"".join(b',"%s":%s' % (name.encode(), value) for name, value in encoded.items()) + b"}"
