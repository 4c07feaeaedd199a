"""Read the order-processor's output topics as a read_committed consumer: ``order-state`` (each
order's latest committed state) and ``order-effects`` (every committed side effect).

A transaction that was aborted, or is still open, is never seen here; ``reader.read_to_end``
reads them, and says what "to the end" means and why a restore settles first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING

from ..config import Settings
from ..domain.changelog import order_from_json
from ..domain.errors import InvalidEvent
from ..domain.events import parse_value
from ..domain.state_machine import Order
from .reader import read_to_end

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("order_system.kafka.changelog_reader")
RESTORE_TIMEOUT = 120.0  # seconds a restore may take before it is reported as failed


def restore_orders(settings: Settings, partitions: Iterable[int] | None,
                   timeout: float = RESTORE_TIMEOUT) -> dict[int, dict[str, Order]]:
    """The committed state of every order in ``partitions`` of ``order-state`` (None: all), per partition.

    Only the last value of each key is decoded (a compacted topic may still hold older ones); a
    tombstone removes the order; a value that is not an order is logged and skipped.
    """
    wanted = None if partitions is None else list(partitions)
    latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in wanted or ()}
    # settled: the previous owner's last transaction may be committed with its markers on the way
    for message in read_to_end(settings, settings.state_topic, wanted, timeout, settle=True):
        if message.key() is not None:
            latest.setdefault(message.partition(), {})[message.key()] = message.value()
    restored: dict[int, dict[str, Order]] = {p: {} for p in latest}
    for partition, values in latest.items():
        for key, value in values.items():
            if value is None:
                continue
            try:
                order = order_from_json(value)
            except InvalidEvent as exc:
                log.error("skipping %s[%d] key %r: %s", settings.state_topic, partition, key[:100], exc)
                continue
            restored[partition][order.order_id] = order
    return restored


def read_order_state(settings: Settings, timeout: float = 60.0) -> dict[str, Order]:
    """Every order's latest committed state in ``order-state`` (all partitions)."""
    return {order_id: order for orders in restore_orders(settings, None, timeout).values()
            for order_id, order in orders.items()}


def read_effects(settings: Settings, timeout: float = 60.0, isolation: str = "read_committed") -> pd.DataFrame:
    """Every committed side effect in ``order-effects``, one row each, in partition and offset order
    (``isolation="read_uncommitted"``: also those of open and aborted transactions)."""
    import pandas as pd  # not at module level: the groups' processes start without it

    rows = []
    for message in read_to_end(settings, settings.effects_topic, None, timeout, isolation):
        with suppress(InvalidEvent):  # not an effect: left out
            fields = parse_value(message.value())
            rows.append({"partition": message.partition(), "offset": message.offset(),
                         "event_id": fields.get("eventId"), "order_id": fields.get("orderId"),
                         "version": fields.get("version"), "kind": fields.get("kind"), "detail": fields.get("detail")})
    columns = ["partition", "offset", "event_id", "order_id", "version", "kind", "detail"]
    return pd.DataFrame(rows, columns=columns).sort_values(["partition", "offset"], ignore_index=True)

