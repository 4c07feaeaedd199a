"""The committed JSON Schema of the wire format matches the model and the events we write."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator, FormatChecker

from order_system.domain.events import OrderEvent, OrderStatus
from order_system.local.demo import plan_lifecycles
from order_system.domain.schema import SCHEMA_PATH, event_json_schema, schema_text


def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()), format_checker=FormatChecker())


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        f"{SCHEMA_PATH} is out of date with OrderEvent: run `.venv/bin/python -m order_system.domain.schema`"
        " and commit it")


def test_the_schema_requires_what_the_reader_requires() -> None:
    schema = event_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["eventId", "orderId", "customerId", "status", "timestamp", "version"]
    assert "additionalProperties" not in schema  # readers ignore unknown fields; the schema allows them
    assert {"items", "total"} <= set(schema["properties"])  # optional


def test_every_event_we_write_is_valid() -> None:
    events = plan_lifecycles(20, seed=7)
    assert {e.status for e in events} == set(OrderStatus)
    for event in events:
        errors = list(validator().iter_errors(json.loads(event.to_json())))
        assert errors == [], errors


def test_the_spring_tutorials_event_is_not_our_format() -> None:
    tutorial = {"orderId": "abc12345", "customerId": "c1", "status": "CREATED", "description": "Order created",
                "timestamp": "2024-01-15T10:30:00"}
    problems = {e.message for e in validator().iter_errors(tutorial)}
    assert "'eventId' is a required property" in problems and "'version' is a required property" in problems
    assert any("date-time" in p for p in problems)  # no time zone


def test_what_the_schema_refuses_the_reader_refuses_too() -> None:
    good = json.loads(OrderEvent.created("abc12345", "c1").to_json())
    line = {"sku": "A-1", "quantity": 2, "unitPrice": {"amount": "2.50", "currency": "EUR"}}
    total = {"amount": "5.00", "currency": "EUR"}
    for bad in ({**good, "version": 0}, {**good, "orderId": ""}, {**good, "status": "LOST"},
                {**good, "customerId": "c" * 65}, {**good, "items": [], "total": total},
                {**good, "items": [{**line, "quantity": 0}], "total": total},
                {**good, "items": [{**line, "unitPrice": {"amount": 2.5, "currency": "EUR"}}], "total": total},
                {**good, "items": [{**line, "unitPrice": {"amount": "2.505", "currency": "EUR"}}], "total": total},
                {**good, "items": [{**line, "sku": "a-1"}], "total": total},
                {**good, "status": "PAID", "version": 2, "items": [line], "total": total},
                {**good, "items": [line], "total": {"amount": "5.00", "currency": "eur"}}):
        assert list(validator().iter_errors(bad))
        try:
            OrderEvent.from_json(json.dumps(bad))
        except ValueError:
            continue
        raise AssertionError(f"the reader accepted {bad}")


def test_the_schema_and_the_reader_both_take_an_unknown_field_and_items() -> None:
    good = json.loads(OrderEvent.created("abc12345", "c1").to_json())
    line = {"sku": "A-1", "quantity": 2, "unitPrice": {"amount": "2.50", "currency": "EUR", "taxRate": "0.19"}}
    for fine in ({**good, "giftWrap": True, "loyalty": {"points": 7}},
                 {**good, "items": [line], "total": {"amount": "5.00", "currency": "EUR"}},
                 {**good, "items": None, "total": None}):  # Jackson writes nulls unless told not to
        assert list(validator().iter_errors(fine)) == []
        assert OrderEvent.from_json(json.dumps(fine)).order_id == "abc12345"
