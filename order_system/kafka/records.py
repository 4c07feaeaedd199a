"""What the consumer runner and its failure policies share: a consumed record (``Received``), how
it is read (``decode``, ``decode_accepted``), what a group hands the runner (``Handler``,
``Decoder``), what a policy may use of the runner (``Runner``) and the two signals a policy
raises to it (``Deferred``, ``Stopping``).

It sits below ``consumer``, ``retry`` and ``dead_letters``, so those import it and not
each other in a circle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, Message, TopicPartition

from ..config import Settings
from ..domain.changelog import Outcome, Verdict
from ..domain.errors import InvalidEvent
from ..domain.events import OrderEvent
from .spring_compat import read_event


@dataclass(frozen=True, slots=True)
class Received:
    """One consumed record, detached from the client (slots: one object, not two, per record)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    headers: dict[str, bytes]
    value: bytes | None
    raw_key: bytes | None = None

    @classmethod
    def from_message(cls, message: Message) -> Received:
        raw_key = message.key()
        try:
            headers = dict(message.headers() or [])
        except Exception:  # a header name that is not UTF-8: the record is kept, its headers not
            headers = {}
        return cls(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                   key=raw_key.decode(errors="replace") if raw_key is not None else None,
                   timestamp_ms=message.timestamp()[1], headers=headers, value=message.value(), raw_key=raw_key)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.decode(errors="replace") if value is not None else None

    def place(self) -> dict[str, str]:
        """Where this record is, as the ``original-*`` headers of its copies (retries, dead letters) say it."""
        return {"original-topic": self.topic, "original-partition": str(self.partition),
                "original-offset": str(self.offset), "original-timestamp-ms": str(self.timestamp_ms)}


Handler = Callable[[OrderEvent, Received], "str | None"]
# A record as the event its group acts on; None: not for this group (counted as skipped).
# Raises InvalidEvent for a record that can never be one (it is dead-lettered).
Decoder = Callable[[Received], "OrderEvent | None"]


def decode(received: Received, require_key: bool = True, zone: str = "UTC") -> OrderEvent:
    """The record's event; ``InvalidEvent`` (with a ``reason``) when it can never be one, whatever
    went wrong (an error nobody foresaw is reason ``undecodable``). The Spring tutorial's events are
    read too (``zone``: of their zone-less timestamps)."""
    if received.raw_key is None and require_key:
        raise InvalidEvent("record has no key; events must be keyed by order id", "missing-key")
    try:
        event = read_event(received, zone)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise InvalidEvent(f"undecodable value: {type(exc).__name__}: {exc}"[:1000], "undecodable") from exc
    _check_key(received, event)
    return event


def decode_accepted(received: Received) -> OrderEvent | None:
    """The event an ``order-verdicts`` record accepted; None when its outcome is duplicate or
    rejected (nothing happened to the order). ``InvalidEvent`` when it is not a verdict, or an
    accepted one without its event or with an event that disagrees with it or with the key."""
    try:
        verdict = Verdict.from_json(received.value)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise InvalidEvent(f"undecodable verdict: {type(exc).__name__}: {exc}"[:1000], "undecodable") from exc
    if verdict.outcome is not Outcome.ACCEPTED:
        return None
    event = verdict.event
    if event is None:
        raise InvalidEvent("an accepted verdict without its event", "bad-verdict")
    if (verdict.event_id, verdict.order_id, verdict.version) != (str(event.event_id), event.order_id, event.version):
        raise InvalidEvent("the verdict's eventId, orderId or version disagree with its event", "bad-verdict")
    if received.raw_key is None:
        raise InvalidEvent("accepted verdict has no key; it must be keyed by order id", "missing-key")
    _check_key(received, event)
    return event


def _check_key(received: Received, event: OrderEvent) -> None:
    if received.raw_key is not None and received.key != event.order_id:
        raise InvalidEvent(f"record key {received.key[:100]!r} is not the event's order id {event.order_id!r}",
                           "key-mismatch")


class HandledLine(Protocol):
    """Where a failure policy logs a handled record (``record_log.RecordLog``)."""

    def handled(self, text: str, suffix: str = "") -> None: ...


class Runner(Protocol):
    """What a failure policy uses of the runner that calls it."""

    settings: Settings
    group_id: str
    name: str
    log: logging.Logger
    record_log: HandledLine

    def sleep(self, seconds: float) -> None: ...
    def count_dead_letter(self) -> None: ...
    def count_retry(self) -> None: ...
    def count_handled(self) -> None: ...


class Deferred(Exception):
    """Raised by a failure policy: leave the record unprocessed and come back at ``due``."""

    def __init__(self, due: float) -> None:
        super().__init__(f"deferred until {due:.3f}")
        self.due = due


class Stopping(Exception):
    """Raised while waiting when the runner was asked to stop: the record stays unprocessed."""


def take_batch(consumer: Consumer, limit: int, wait: float) -> list[Message]:
    """Up to ``limit`` records: wait (``wait`` seconds at most) for the first, then take what is
    already fetched without waiting. ``consume(limit, wait)`` alone waits out ``wait`` unless
    ``limit`` records come, which adds that wait to everything downstream under light load."""
    first = consumer.consume(1, wait)
    if not first or limit == 1:
        return first
    return first + consumer.consume(limit - 1, 0)


def names(partitions: list[TopicPartition]) -> str:
    """Partitions as ``topic[0], topic[2]`` for a log line."""
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "(none)"


def without_frames(error: Exception) -> Exception:
    """The exception without its tracebacks (nor those of its cause and context): a kept failure
    must not keep the frames it was raised through alive, and with them a whole batch."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error

