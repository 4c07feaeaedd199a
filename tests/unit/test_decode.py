"""The consumer's decode step and the retry headers' bounds: pure, no broker."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from order_system.config import Settings
from order_system.domain import events
from order_system.domain.changelog import Outcome, Verdict
from order_system.kafka.consumer import Received, decode
from order_system.kafka.dead_letters import replay_topic
from order_system.kafka.records import decode_accepted
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


# ---- notification-service's decoder: an order-verdicts record -> the event it accepted ----------


def verdict_record(verdict: Verdict | bytes | None, key: bytes | None = b"abc12345") -> Received:
    value = verdict.to_json() if isinstance(verdict, Verdict) else verdict
    return received(value, key)


def test_an_accepted_verdict_gives_its_event() -> None:
    event = OrderEvent.created("abc12345", "c-1")
    assert decode_accepted(verdict_record(Verdict.of(Outcome.ACCEPTED, event, 0, 3))) == event


@pytest.mark.parametrize("outcome", [Outcome.DUPLICATE, Outcome.REJECTED])
def test_a_duplicate_or_rejected_verdict_is_for_nobody(outcome: Outcome) -> None:
    event = OrderEvent.created("abc12345", "c-1")
    verdict = Verdict.of(outcome, event, 0, 3, reason="version-conflict" if outcome is Outcome.REJECTED else None)
    assert verdict.event is None and decode_accepted(verdict_record(verdict)) is None


def _accepted_fields() -> dict[str, object]:
    return json.loads(Verdict.of(Outcome.ACCEPTED, OrderEvent.created("abc12345", "c-1"), 0, 3).to_json())


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [({"outcome": "maybe"}, b"abc12345", "bad-verdict"),
     ({"event": None}, b"abc12345", "bad-verdict"),  # accepted, but which event?
     ({"orderId": "other999"}, b"abc12345", "bad-verdict"),  # the verdict and its event disagree
     ({"version": 2}, b"abc12345", "bad-verdict"),
     ({"event": {"orderId": "abc12345"}}, b"abc12345", "bad-verdict"),  # not an event
     ({"event": [1, 2]}, b"abc12345", "bad-verdict"),
     ({"partition": "x"}, b"abc12345", "bad-verdict"),
     ({}, b"other999", "key-mismatch"),
     ({}, None, "missing-key")],
)
def test_a_bad_verdict_is_an_invalid_event(change: dict[str, object], key: bytes | None, reason: str) -> None:
    value = json.dumps({**_accepted_fields(), **change}).encode()
    with pytest.raises(InvalidEvent) as raised:
        decode_accepted(verdict_record(value, key))
    assert raised.value.reason == reason


@pytest.mark.parametrize("value", [None, b"", b"garbage", b"[]", b"{}", b"null", b"[" * 30_000 + b"]" * 30_000,
                                   b"\xff\xfe", OrderEvent.created("abc12345", "c-1").to_json(),
                                   b"x" * 200_000])
def test_what_is_not_a_verdict_is_an_invalid_event(value: bytes | None) -> None:
    """Garbage (including a plain event: notification-service reads verdicts) is dead-lettered."""
    with pytest.raises(InvalidEvent):
        decode_accepted(verdict_record(value))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4),
                     max_leaves=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(_accepted_fields())), value=_json, raw=st.binary(max_size=200))
def test_the_verdict_decoder_never_crashes(field: str, value: object, raw: bytes) -> None:
    """Any field of a good verdict replaced by any JSON, or any bytes: an event, None, or InvalidEvent."""
    for record in (verdict_record(json.dumps({**_accepted_fields(), field: value}).encode()), verdict_record(raw)):
        try:
            result = decode_accepted(record)
        except InvalidEvent as exc:
            assert exc.reason
        else:
            assert result is None or isinstance(result, OrderEvent)


def test_a_dead_letter_goes_back_to_the_topic_it_came_from_but_nowhere_else() -> None:
    own = Settings().with_topic("shop-events")
    assert replay_topic(own, "shop-verdicts") == "shop-verdicts"
    assert replay_topic(own, "shop-events") == "shop-events"
    for elsewhere in ("shop-state", "shop-events-retry-0", "somebody-elses-topic", None):
        assert replay_topic(own, elsewhere) == "shop-events"  # a header cannot aim a replay at any topic


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_processors_verdict_bytes_are_those_of_a_verdict(outcome: Outcome) -> None:
    from order_system.domain.changelog import verdict_to_json

    event = OrderEvent.paid('ab"c\u00e9', "c\\1", 2)
    for reason, detail in ((None, None), ("version-conflict", "x" * 900), ("schema", "")):
        assert verdict_to_json(outcome, event, 1, 7, reason, detail) == \
            Verdict.of(outcome, event, 1, 7, reason, detail).to_json()
