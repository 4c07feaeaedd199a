"""The JSON Schema of ``OrderEvent`` on the wire, generated from the pydantic model.

The committed copy, ``schema/order-event.schema.json``, is for producers and consumers in other
languages (a Spring service, say); a test keeps it equal to what this module generates.
Regenerate it with ``python -m order_system.domain.schema``.

Readers ignore fields they do not know, so the schema allows them (no ``additionalProperties:
false``): a writer may add an optional field without breaking a reader built before it. What
JSON Schema cannot say is said in the descriptions: ``total`` is the sum of the items' prices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .events import _REQUIRED_ON_WIRE, OrderEvent

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema" / "order-event.schema.json"
_NOTES = {
    "eventId": "Unique per event; a redelivered record carries the same id, so consumers can skip it.",
    "orderId": "The order; also the record key, so all events of an order share a partition.",
    "timestamp": "When the event happened: ISO 8601 with a time zone (RFC 3339), e.g. 2026-11-24T10:15:30.123456Z.",
    "version": "The order's 1st, 2nd, ... event: consumers detect gaps and duplicates with it.",
    "items": "Optional, on CREATED only: the order's lines, one per SKU, priced when the order was created. "
             "This package leaves it out when the order has no items; a reader takes null as absent.",
    "total": "With items and only with them: the sum of quantity x unitPrice.amount over the items, in their "
             "one currency. A reader refuses an event whose total disagrees, or a total without items.",
}
_OPTIONAL = ("items", "total")  # present together, on CREATED only; null is read as absent


def event_json_schema() -> dict[str, Any]:
    """The schema of one record value as this package writes and requires it."""
    schema = OrderEvent.model_json_schema(by_alias=True, mode="serialization")
    properties = schema["properties"]
    for name in _OPTIONAL:  # as a reader takes them (pydantic adds a default, and total is computed: read-only)
        properties[name] = {"anyOf": properties[name]["anyOf"]}
    required = (set(schema["required"]) | set(_REQUIRED_ON_WIRE)) - set(_OPTIONAL)
    schema["required"] = [name for name in properties if name in required]
    for name, note in _NOTES.items():
        properties[name]["description"] = note
    schema["if"] = {"properties": {"status": {"not": {"const": "CREATED"}}}}
    schema["then"] = {"properties": {name: {"type": "null"} for name in _OPTIONAL}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(event_json_schema(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(schema_text())
    print(f"wrote {SCHEMA_PATH}")
