"""The dead-letter topic: write records that failed, read them back, replay them after a fix.

A dead-letter record keeps the original key and value bytes unchanged; headers say where it
came from (topic, partition, offset, timestamp), which group gave up on it, why (a short
reason, the error's class and message) and after how many attempts. Only a record too large
for the broker once these headers are added is cut: its first ``MAX_VALUE_BYTES`` of value and
1 KiB of key are kept, its own headers dropped, and ``dlt-original-value-bytes`` /
``dlt-original-key-bytes`` say how long they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..config import Settings
from ..domain.errors import InvalidTransition, PublishError
from ..domain.events import MAX_VALUE_BYTES
from .reader import read_records
from .records import Received

if TYPE_CHECKING:
    import pandas as pd

DLT_PREFIX = "dlt-"
DLT_HEADERS = ("original-topic", "original-partition", "original-offset", "original-timestamp-ms", "group",
               "reason", "error-class", "error-message", "attempts", "transition-from", "transition-to")
_ORIGIN_HEADERS = DLT_HEADERS[:4]  # where the record was first written
MAX_KEY_KEPT = 1024  # bytes of key a cut dead-letter record keeps


class _TooLarge(PublishError):
    """The broker (or the client) refused a record for its size."""


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter record, built but not sent (``DeadLetters.send`` sends it; the
    order-processor writes it in its transaction)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v) for k, v in self.headers)


def dead_letter(settings: Settings, received: Received, error: Exception, *, group: str, attempts: int,
                reason: str) -> DeadLetter:
    """The dead-letter record for ``received``: its key and value unchanged, its own headers, and
    ``dlt-`` headers saying where it came from, which group gave up, why and after how many attempts."""
    origin = received.place()
    if received.topic in settings.retry_topics:  # where it came from before the retries
        origin = {name: received.header(name) or here for name, here in origin.items()}
    ours = {**origin, "group": group, "reason": reason, "error-class": type(error).__name__,
            "error-message": str(error)[:1000], "attempts": str(attempts)}
    if isinstance(error, InvalidTransition):
        ours["transition-from"] = getattr(error.current, "value", None) or "(none)"
        ours["transition-to"] = getattr(error.requested, "value", str(error.requested))
    kept = [(k, v) for k, v in received.headers.items() if not k.startswith(DLT_PREFIX)]
    headers = [(DLT_PREFIX + k, v.encode(errors="replace")) for k, v in ours.items()]
    return DeadLetter(settings.dead_letter_topic, received.raw_key, received.value, kept + headers)


def cut(letter: DeadLetter) -> DeadLetter:
    """``letter`` cut to fit the broker: the first ``MAX_VALUE_BYTES`` of its value and
    ``MAX_KEY_KEPT`` of its key, only its ``dlt-`` headers, and how long key and value were."""
    key, value = letter.key, letter.value
    headers = [(k, v) for k, v in letter.headers if k.startswith(DLT_PREFIX)]
    headers += [(DLT_PREFIX + "original-key-bytes", str(len(key or b"")).encode()),
                (DLT_PREFIX + "original-value-bytes", str(len(value or b"")).encode())]
    return DeadLetter(letter.topic, key[:MAX_KEY_KEPT] if key else key, value[:MAX_VALUE_BYTES] if value else value,
                      headers)


class DeadLetters:
    """Writes dead-letter and retry records, synchronously: a record counts as disposed of only
    once the broker has it (the consumer stores its offset after that)."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._producer = Producer(settings.producer_config(**{
            "enable.idempotence": True, "acks": "all", "client.id": "order-system-dead-letters"}))

    def send(self, received: Received, error: Exception, *, group: str, attempts: int, reason: str) -> None:
        letter = dead_letter(self.settings, received, error, group=group, attempts=attempts, reason=reason)
        try:
            self._produce(letter)
        except _TooLarge:
            self._produce(cut(letter))

    def forward(self, topic: str, received: Received, headers: list[tuple[str, bytes]]) -> None:
        """Copy ``received`` (same key and value) to a retry topic with ``headers``."""
        self._produce(DeadLetter(topic, received.raw_key, received.value, headers))

    def _produce(self, letter: DeadLetter) -> None:
        errors: list[KafkaError] = []
        try:
            self._producer.produce(letter.topic, key=letter.key, value=letter.value, headers=letter.headers,
                                   on_delivery=lambda err, msg: err is not None and errors.append(err))
        except KafkaException as exc:  # refused by the client itself, e.g. for its size
            errors.append(exc.args[0])
        if self._producer.flush(self.timeout) or errors:
            too_large = any(e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e in errors)
            raise (_TooLarge if too_large else PublishError)(
                f"could not write to {letter.topic}: {errors[0].str() if errors else 'timed out'}")


def _row(message: Message) -> dict[str, object]:
    """One dead-letter record as a row: where it is, its key, its dlt- headers, its value."""
    headers = {k: v.decode(errors="replace") for k, v in (message.headers() or [])}
    key, value = message.key(), message.value()
    return {
        "partition": message.partition(), "offset": message.offset(),
        "key": key.decode(errors="replace") if key is not None else None,
        **{h: headers.get(DLT_PREFIX + h) for h in DLT_HEADERS},
        "value": value.decode(errors="replace")[:200] if value is not None else None,
    }


def read_dead_letters(settings: Settings, timeout: float = 10.0, limit: int = 10_000) -> pd.DataFrame:
    """Every record now in the dead-letter topic, one row each, with its headers as columns."""
    import pandas as pd  # not at module level: the groups' processes start without it

    rows = [_row(message) for message in read_records(settings, settings.dead_letter_topic, timeout, limit)]
    return pd.DataFrame(rows, columns=["partition", "offset", "key", *DLT_HEADERS, "value"])


def replay_topic(settings: Settings, original_topic: object) -> str:
    """Where a dead letter goes back to: the topic its ``dlt-original-topic`` header names when
    that is the verdicts topic, else the main topic (a header never sends it anywhere else)."""
    return settings.verdicts_topic if original_topic == settings.verdicts_topic else settings.topic


def replay(settings: Settings, select: Callable[[pd.Series], bool] | Iterable[tuple[int, int]] | None = None,
           timeout: float = 30.0) -> int:
    """Republish chosen dead-letter records, key and value unchanged, to the topic they came from
    (``replay_topic``: the main topic, or the verdicts topic for a verdict notification-service gave up on).

    ``select`` is a predicate over rows of ``read_dead_letters`` or a set of (partition,
    offset) pairs; ``None`` replays all. Returns how many were republished.
    """
    import pandas as pd  # not at module level: the groups' processes start without it

    pairs = None if select is None or callable(select) else set(select)
    producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all"}))
    count = 0
    errors: list[str] = []
    for message in read_records(settings, settings.dead_letter_topic, timeout, 100_000):
        row = pd.Series(_row(message))
        if pairs is not None and (message.partition(), message.offset()) not in pairs:
            continue
        if callable(select) and not select(row):
            continue
        # where the record was first written travels on, so a replayed event keeps its identity:
        # its own original-* headers (from a retry topic or an earlier replay), else the dead letter's
        headers = message.headers() or []
        kept = [(k, v) for k, v in headers if not k.startswith(DLT_PREFIX)]
        own = {k for k, _ in kept}
        kept += [(k.removeprefix(DLT_PREFIX), v) for k, v in headers
                 if k.startswith(DLT_PREFIX) and k.removeprefix(DLT_PREFIX) in set(_ORIGIN_HEADERS) - own]
        kept.append(("replayed-from", f"{message.topic()}/{message.partition()}/{message.offset()}".encode()))
        producer.produce(replay_topic(settings, row["original-topic"]), key=message.key(), value=message.value(),
                         headers=kept, on_delivery=lambda err, msg: err is not None and errors.append(err.str()))
        count += 1
    if producer.flush(timeout) or errors:
        raise PublishError(f"replay failed: {errors[0] if errors else 'timed out'}")
    return count
