"""OrderEvent on the wire: round trips, headers, and errors that name the field."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from order_system.domain.errors import InvalidEvent
from order_system.domain.events import (
    CONTENT_TYPE, EMPTY, EVENT_TYPES, MAX_VALUE_BYTES, MAX_VERSION, NOT_JSON, OVERSIZED, SCHEMA, UNKNOWN_STATUS,
    OrderEvent, OrderStatus, new_order_id,
)


def test_json_round_trip_keeps_every_field() -> None:
    event = OrderEvent.paid("abc12345", "customer-123", 2, "card ending 4242")
    again = OrderEvent.from_json(event.to_json())
    assert again == event
    assert again.timestamp.tzinfo is not None


def test_wire_keys_are_camel_case() -> None:
    wire = json.loads(OrderEvent.created("abc12345", "customer-123").to_json())
    assert set(wire) == {"eventId", "orderId", "customerId", "status", "description", "timestamp", "version"}
    assert wire["status"] == "CREATED" and wire["version"] == 1
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", wire["timestamp"])


@pytest.mark.parametrize(
    ("make", "status", "version"),
    [(lambda: OrderEvent.created("o", "c"), OrderStatus.CREATED, 1),
     (lambda: OrderEvent.paid("o", "c", 2), OrderStatus.PAID, 2),
     (lambda: OrderEvent.shipped("o", "c", 3), OrderStatus.SHIPPED, 3),
     (lambda: OrderEvent.delivered("o", "c", 4), OrderStatus.DELIVERED, 4),
     (lambda: OrderEvent.cancelled("o", "c", 2), OrderStatus.CANCELLED, 2)],
)
def test_one_constructor_per_transition(make, status: OrderStatus, version: int) -> None:
    event = make()
    assert (event.status, event.version) == (status, version)
    assert event.description  # each status has a default description


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        OrderEvent(order_id="o", customer_id="c", status=OrderStatus.CREATED, version=1, timestamp=datetime(2026, 1, 1))


def wire(**changes: object) -> bytes:
    body = OrderEvent.created("abc12345", "customer-123").to_dict()
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "reason", "named"),
    [(b"", "empty", "empty value"),
     (None, "empty", "empty value"),
     (b"\xff\xfe", "not-json", "UTF-8"),
     (b"not json", "not-json", "not JSON"),
     (b"[1, 2]", "schema", "JSON object"),
     (wire(orderId=...), "schema", "orderId: Field required"),
     (wire(eventId=...), "schema", "eventId: Field required"),
     (wire(timestamp=...), "schema", "timestamp: Field required"),
     (wire(orderId="   "), "schema", "orderId"),
     (wire(version=0), "schema", "version: Input should be greater than or equal to 1"),
     (wire(status="LOST"), "unknown-status", "status: Input should be"),
     (wire(timestamp="2026-11-24T10:00:00"), "schema", "timestamp: Value error, must carry a time zone"),
     # an unknown field is ignored (test_old_format.py), a wrong known one beside it still refuses the event
     (wire(giftWrap=True, version="1"), "schema", "version: Input should be a valid integer")],
)
def test_bad_payloads_name_the_problem(payload: bytes | None, reason: str, named: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(payload)
    assert raised.value.reason == reason
    assert named in str(raised.value)


def test_key_and_headers() -> None:
    event = OrderEvent.shipped("abc12345", "customer-123", 3)
    assert event.key() == b"abc12345"
    assert dict(event.headers()) == {
        "event-type": b"OrderShipped", "event-id": str(event.event_id).encode(), "content-type": b"application/json"}


def test_order_ids_are_short_url_safe_and_unique() -> None:
    ids = {new_order_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[a-z0-9]{8}", i) for i in ids)


def test_round_trip_keeps_an_offset_and_accepts_text() -> None:
    stamp = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = OrderEvent(order_id="o", customer_id="c", status=OrderStatus.SHIPPED, version=3, timestamp=stamp,
                       description="via DHL")
    again = OrderEvent.from_json(event.to_json().decode())
    assert again.model_dump() == event.model_dump()
    assert event.to_dict()["timestamp"] == "2026-11-24T10:15:30.123456+02:00"
    assert event.to_dict() == json.loads(event.to_json())


def test_ids_are_stripped_and_bounded() -> None:
    event = OrderEvent.created("  o-1 ", " c-1 ")
    assert (event.order_id, event.customer_id) == ("o-1", "c-1")
    for bad in [{"order_id": "x" * 65}, {"customer_id": " "}, {"description": "x" * 501}]:
        fields = {"order_id": "o", "customer_id": "c", "status": OrderStatus.CREATED, "version": 1} | bad
        with pytest.raises(ValidationError, match=next(iter(bad))):
            OrderEvent(**fields)


def test_events_are_immutable() -> None:
    event = OrderEvent.created("o", "c")
    with pytest.raises(ValidationError, match="frozen"):
        event.version = 2  # type: ignore[misc]


def test_schema_error_keeps_the_validation_error_and_lists_every_field() -> None:
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(wire(status="LOST", version=0))
    assert isinstance(raised.value.__cause__, ValidationError)
    assert raised.value.reason == UNKNOWN_STATUS  # one of the problems is the status
    message = str(raised.value)
    assert message.startswith("invalid OrderEvent: ")
    assert "status: Input should be 'CREATED'" in message and "version: Input should be greater" in message


def test_reason_codes_are_the_documented_strings() -> None:
    assert (EMPTY, NOT_JSON, SCHEMA, UNKNOWN_STATUS) == ("empty", "not-json", "schema", "unknown-status")


def test_snake_case_keys_are_not_accepted_on_the_wire() -> None:
    body = OrderEvent.created("o", "c").to_dict()
    body["order_id"] = body.pop("orderId")
    with pytest.raises(InvalidEvent, match="orderId: Field required") as raised:
        OrderEvent.from_json(json.dumps(body))
    assert raised.value.reason == SCHEMA


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_status_has_an_event_type_and_a_constructor(status: OrderStatus) -> None:
    event = OrderEvent.for_status(status, "o", "c", 2)
    assert dict(event.headers())["event-type"] == EVENT_TYPES[status].encode()
    assert dict(event.headers())["content-type"] == CONTENT_TYPE.encode()
    assert EVENT_TYPES[status] == "Order" + status.value.capitalize()
    assert OrderEvent.for_status(status, "o", "c", 2, "custom").description == "custom"


def test_documented_bounds() -> None:
    assert (MAX_VALUE_BYTES, MAX_VERSION, OVERSIZED) == (64 * 1024, 2**31 - 1, "oversized")
    assert OrderEvent.for_status(OrderStatus.PAID, "o", "c", MAX_VERSION).version == MAX_VERSION


@pytest.mark.parametrize(
    ("payload", "reason", "named"),
    [(b"[" * 100_000 + b"]" * 100_000, "oversized", "200000 bytes is over the limit of 65536"),
     (b" " * 900_000, "oversized", "900000 bytes"),
     (wire(description="x" * MAX_VALUE_BYTES), "oversized", "over the limit"),
     (b"[" * 30_000 + b"]" * 30_000, "not-json", "recursion limit exceeded"),
     (b'{"a":' * 1000 + b"1" + b"}" * 1000, "not-json", "recursion limit exceeded"),
     (b"1" * 5000, "not-json", "number out of range"),
     (wire(version=2**70), "schema", "version: Input should be less than or equal to 2147483647"),
     (wire(version=2**62), "schema", "version: Input should be less than or equal to 2147483647"),
     (wire(version=2**31), "schema", "version: Input should be less than or equal to 2147483647"),
     (wire(version=-(2**70)), "schema", "version: Input should be greater than or equal to 1"),
     (wire(version=1.0), "schema", "version: Input should be a valid integer"),
     (wire(version="1"), "schema", "version: Input should be a valid integer"),
     (wire(version=True), "schema", "version: Input should be a valid integer"),
     (wire(version=1e308), "schema", "version: Input should be a valid integer"),
     (wire(version=None), "schema", "version: Input should be a valid integer"),
     (wire(orderId=12345678), "schema", "orderId: Input should be a valid string"),
     (wire(status=["CREATED"]), "unknown-status", "status"),
     (wire(timestamp=10**20), "schema", "timestamp: Input should be a valid datetime"),
     (wire(timestamp="99999-01-01T00:00:00Z"), "schema", "timestamp"),
     (wire(eventId="not-a-uuid"), "schema", "eventId: Input should be a valid UUID"),
     (wire(description={"nested": ["deep"]}), "schema", "description: Input should be a valid string"),
     (b'{"version": NaN}', "not-json", "not JSON"),
     (b'{"version": Infinity}', "not-json", "not JSON"),
     (b'{"description": "\\ud800"}', "not-json", "not JSON"),
     (b"\xc3\x28", "not-json", "not UTF-8"),
     (b"\xed\xa0\x80", "not-json", "not UTF-8"),  # a UTF-16 surrogate encoded as UTF-8
     (b"null", "schema", "expected a JSON object, got NoneType"),
     (b'"just a string"', "schema", "expected a JSON object, got str"),
     (b"{}" + b" " * 10 + b"{}", "not-json", "trailing characters")],
)
def test_hostile_values_are_invalid_events_with_a_reason(payload: bytes, reason: str, named: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(payload)
    assert (raised.value.reason, named in str(raised.value)) == (reason, True), str(raised.value)


def test_an_invalid_event_lists_at_most_ten_problems() -> None:
    line = {"sku": "no spaces", "quantity": 0, "unitPrice": {"amount": "1.00", "currency": "EUR"}}
    body = json.loads(wire()) | {"items": [line] * 50}  # two problems a line
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(json.dumps(body))
    assert str(raised.value).count("sku: String should match pattern") == 5
    assert str(raised.value).endswith("; and 90 more")


def test_text_is_measured_in_utf8_bytes() -> None:
    body = wire(description="é" * 400)  # 400 characters, 800 bytes: under every bound
    assert OrderEvent.from_json(body.decode()).description == "é" * 400
    with pytest.raises(InvalidEvent, match="over the limit") as raised:
        OrderEvent.from_json("é" * (MAX_VALUE_BYTES // 2 + 1))
    assert raised.value.reason == OVERSIZED


_REFUSED = [case[0] for test in (test_bad_payloads_name_the_problem,
                                 test_hostile_values_are_invalid_events_with_a_reason)
            for case in test.pytestmark[0].args[1]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload", _REFUSED)
def test_one_step_decoding_refuses_whatever_from_json_refuses(payload: bytes | None) -> None:
    assert OrderEvent.from_wire(payload) is None  # the caller then takes from_json, which names the problem


def test_one_step_decoding_gives_the_same_event() -> None:
    for payload in (wire(), wire(timestamp="2026-11-24T10:00:00+02:00", description="é\\\""), wire(version=7)):
        assert OrderEvent.from_wire(payload) == OrderEvent.from_json(payload)
        assert OrderEvent.from_wire(payload).to_json() == OrderEvent.from_json(payload).to_json()
