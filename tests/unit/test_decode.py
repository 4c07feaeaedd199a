"""The consumer's decode step and the retry headers' bounds: pure, no broker."""

from __future__ import annotations

import pytest

from order_system.domain import events
from order_system.kafka.consumer import Received, decode
from order_system.domain.errors import InvalidEvent, InvalidTransition
from order_system.domain.events import OrderEvent
from order_system.kafka.retry import _bounded, never_succeeds


def received(value: bytes | None, key: bytes | None = b"abc12345") -> Received:
    return Received(topic="t", partition=0, offset=7, key=key.decode(errors="replace") if key is not None else None,
                    timestamp_ms=0, headers={}, value=value, raw_key=key)


def test_a_good_record_decodes() -> None:
    event = OrderEvent.created("abc12345", "c-1")
    assert decode(received(event.to_json())) == event


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [(b"[" * 100_000 + b"]" * 100_000, b"abc12345", "oversized"),
     (b"[" * 30_000 + b"]" * 30_000, b"abc12345", "not-json"),
     (OrderEvent.created("abc12345", "c-1").to_json(), None, "missing-key"),
     (OrderEvent.created("abc12345", "c-1").to_json(), b"\xff" * 100_000, "key-mismatch"),
     (b"", b"abc12345", "empty")],
)
def test_bad_records_are_invalid_events(value: bytes, key: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode(received(value, key))
    assert raised.value.reason == reason
    assert len(str(raised.value)) < 1000  # a 100 KB key is not repeated in the message


def test_an_unforeseen_decode_error_is_an_invalid_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str, allow_inf_nan: bool) -> object:
        raise MemoryError("simulated: the parser ran out of memory")

    monkeypatch.setattr(events, "parse_json", explode)
    with pytest.raises(InvalidEvent, match="undecodable value: MemoryError: simulated") as raised:
        decode(received(b"{}"))
    assert raised.value.reason == "undecodable" and never_succeeds(raised.value) == "undecodable"


def test_what_is_retried_and_what_is_not() -> None:
    assert never_succeeds(InvalidTransition("o", None, "PAID")) == "invalid-transition"
    assert never_succeeds(InvalidEvent("x", "version-conflict")) == "version-conflict"
    assert never_succeeds(RuntimeError("payment service down")) is None  # a handler's own failure: retried


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 9), ("3", 3), ("-5", 1), ("99999999999999999999", 5), ("9" * 5000, 9), ("abc", 9), ("", 9), ("2.5", 9)],
)
def test_retry_headers_are_bounded(text: str | None, expected: int) -> None:
    assert _bounded(text, 1, 5, default=9) == expected
