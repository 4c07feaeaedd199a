"""Events written before orders had items still read and replay unchanged (tests/data/README.md
says what the committed samples hold); and a reader ignores fields it does not know."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from order_system.domain.changelog import order_from_json, order_to_json
from order_system.domain.errors import InvalidEvent
from order_system.domain.events import MAX_VALUE_BYTES, OrderEvent, OrderStatus
from order_system.domain.schema import SCHEMA_PATH
from order_system.domain.state_machine import OrderBook, Outcome, rebuild
from order_system.kafka.records import Received, decode
from order_system.kafka.spring_compat import SPRING_TYPE_HEADER, UnversionedEvent, assign_version, derived_event_id

DATA = Path(__file__).resolve().parents[1] / "data"
OURS = (DATA / "order-events-v1.jsonl").read_bytes().splitlines()
SPRING = (DATA / "spring-tutorial-events.jsonl").read_bytes().splitlines()


def record(value: bytes, offset: int, headers: dict[str, bytes] | None = None) -> Received:
    key = json.loads(value)["orderId"]
    return Received(topic="order-events", partition=0, offset=offset, key=key, timestamp_ms=0,
                    headers=headers or {}, value=value, raw_key=key.encode())


def test_our_old_events_decode_and_encode_to_the_same_bytes() -> None:
    assert len(OURS) == 9
    for offset, value in enumerate(OURS):
        event = decode(record(value, offset))
        assert type(event) is OrderEvent and event.items is None and event.total is None
        assert event.to_json() == value  # byte for byte: nothing gained, nothing reordered
        assert OrderEvent.from_json(value) == event


def test_our_old_events_replay_into_the_same_orders() -> None:
    result = rebuild(decode(record(value, n)) for n, value in enumerate(OURS))
    assert (result.rejected, result.gaps) == ([], [])
    assert [(d.order_id, d.version) for d in result.duplicates] == [("a1b2c3d4", 2)]  # the redelivery
    states = {o.order_id: (o.status, o.version, o.items) for o in result.orders.values()}
    assert states == {"a1b2c3d4": (OrderStatus.DELIVERED, 4, None), "e5f6a7b8": (OrderStatus.CANCELLED, 2, None),
                      "w8xvf1l3": (OrderStatus.PAID, 2, None)}
    cancelled = result.orders["e5f6a7b8"]
    assert cancelled.history[0].description == "Bestellung für Zoë"
    assert cancelled.created_at == datetime(2026, 3, 2, 9, 20, 5, tzinfo=timezone.utc)
    for order in result.orders.values():  # the order-state records of old orders gain nothing either
        text = order_to_json(order)
        assert b'"items"' not in text and b'"total"' not in text and order_from_json(text) == order


def test_our_old_events_are_valid_under_the_committed_schema() -> None:
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()), format_checker=FormatChecker())
    for value in OURS:
        assert list(validator.iter_errors(json.loads(value))) == []


def replay_as_the_processor_does(events: list[OrderEvent]) -> OrderBook:
    book = OrderBook()
    for event in events:
        found = book.get(event.order_id)
        book.apply(assign_version(event, lambda order_id: found.history if found else ()))
    return book


def test_the_spring_tutorials_events_decode_and_replay() -> None:
    headers = {SPRING_TYPE_HEADER: b"com.example.kafka.model.OrderEvent"}
    events = [decode(record(value, offset, headers)) for offset, value in enumerate(SPRING)]
    assert all(isinstance(e, UnversionedEvent) and e.items is None for e in events)
    assert [e.event_id for e in events] == [derived_event_id("order-events", 0, n) for n in range(len(SPRING))]
    assert events[1].timestamp == datetime(2024, 1, 15, 10, 31, 2, 500000, tzinfo=timezone.utc)  # Jackson's array
    assert events[2].timestamp == datetime(2024, 1, 15, 10, 32, 10, 250000, tzinfo=timezone.utc)
    book = replay_as_the_processor_does(events)
    states = {o.order_id: (o.status, o.version, [e.status for e in o.history]) for o in book.orders()}
    assert states == {
        "sp100001": (OrderStatus.DELIVERED, 4, [OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED,
                                                OrderStatus.DELIVERED]),
        "sp100002": (OrderStatus.CANCELLED, 2, [OrderStatus.CREATED, OrderStatus.CANCELLED]),
    }
    again = decode(record(SPRING[2], 2, headers))  # a redelivery: the same id, so a duplicate
    assert book.apply(assign_version(again, lambda order_id: book.get(order_id).history)) is Outcome.DUPLICATE


UNKNOWN = {"giftWrap": True, "loyalty": {"points": 7, "tier": ["gold"]}, "channel": None, "schemaVersion": 3}


@pytest.mark.parametrize("offset", range(len(OURS)))
def test_a_reader_ignores_fields_it_does_not_know(offset: int) -> None:
    value = OURS[offset]
    wider = json.dumps(json.loads(value) | UNKNOWN, ensure_ascii=False).encode()
    event = decode(record(wider, offset))
    assert event == OrderEvent.from_json(wider) == OrderEvent.from_wire(wider) == OrderEvent.from_json(value)
    assert event.to_json() == value  # what it does not know, it does not write again


def test_a_spring_reader_ignores_fields_it_does_not_know_too() -> None:
    wider = json.dumps(json.loads(SPRING[0]) | UNKNOWN).encode()
    assert decode(record(wider, 0)) == decode(record(SPRING[0], 0))


def test_tolerance_keeps_every_other_rule() -> None:
    body = json.loads(OURS[0]) | UNKNOWN
    for name in ("eventId", "orderId", "customerId", "status", "timestamp", "version"):  # required stays required
        with pytest.raises(InvalidEvent, match=f"{name}: Field required"):
            OrderEvent.from_json(json.dumps({k: v for k, v in body.items() if k != name}))
    with pytest.raises(InvalidEvent, match="version: Input should be a valid integer"):  # a known field's type
        decode(record(json.dumps(body | {"version": "4"}).encode(), 0))
    padded = json.dumps(body | {"padding": "x" * MAX_VALUE_BYTES}).encode()  # the size bound holds
    with pytest.raises(InvalidEvent) as raised:
        decode(record(padded, 0))
    assert raised.value.reason == "oversized" and OrderEvent.from_wire(padded) is None
    deep = json.dumps(body).encode()[:-1] + b',"nested":' + b"[" * 300 + b"]" * 300 + b"}"  # and the depth bound
    with pytest.raises(InvalidEvent) as raised:
        decode(record(deep, 0))
    assert raised.value.reason == "not-json"
