"""The JSON Schema of ``OrderEvent`` on the wire, generated from the pydantic model.

The committed copy, ``schema/order-event.schema.json``, is for producers and consumers in other
languages (a Spring service, say); a test keeps it equal to what this module generates.
Regenerate it with ``python -m order_system.domain.schema``.
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
}


def event_json_schema() -> dict[str, Any]:
    """The schema of one record value as this package writes and requires it."""
    schema = OrderEvent.model_json_schema(by_alias=True, mode="serialization")
    required = set(schema["required"]) | set(_REQUIRED_ON_WIRE)
    schema["required"] = [name for name in schema["properties"] if name in required]
    for name, note in _NOTES.items():
        schema["properties"][name]["description"] = note
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(event_json_schema(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(schema_text())
    print(f"wrote {SCHEMA_PATH}")
