"""The notebooks' table helpers: pure functions over deliveries and frames, no broker."""

from __future__ import annotations

import pandas as pd

from order_system.domain.events import OrderEvent, OrderStatus
from order_system.kafka.producer import Delivery
from order_system.local.tutorial import NO_KEY, label_missing_keys, placement

LIFE = (OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED)


def delivered(order_id: str, where: list[tuple[int, int]]) -> list[Delivery]:
    events = [OrderEvent.for_status(s, order_id, "customer-1", v) for v, s in enumerate(LIFE, 1)]
    return [Delivery("t", p, o, None, e) for e, (p, o) in zip(events, where)]


def test_events_are_listed_in_the_order_they_happened_not_by_partition() -> None:
    # arrival order shuffled; the unkeyed order went to partitions 2, 0, 1
    scattered = delivered("aaaa0001", [(2, 5), (0, 1), (1, 9)])
    kept = delivered("bbbb0002", [(1, 3), (1, 4), (1, 8)])
    backwards = delivered("cccc0003", [(0, 7), (0, 2), (0, 9)])
    table = placement([scattered[2], kept[1], scattered[0], backwards[0], kept[0], scattered[1], kept[2],
                       backwards[2], backwards[1]])
    row = table.loc["aaaa0001"]
    assert row["statuses"] == "CREATED → PAID → SHIPPED"
    assert row["partitions"] == [2, 0, 1] and row["offsets"] == [5, 1, 9]
    assert not row["one_partition"] and not row["in_order"]  # offsets of different partitions are not compared
    assert table.loc["bbbb0002", "in_order"] and table.loc["bbbb0002", "partitions"] == [1, 1, 1]
    assert table.loc["cccc0003", "one_partition"] and not table.loc["cccc0003", "in_order"]


def test_a_missing_key_reads_no_key_and_other_gaps_are_blank() -> None:
    frame = pd.DataFrame({"key": ["k1", None], "reason": ["not-json", "missing-key"],
                          "transition-from": [None, None]})
    shown = label_missing_keys(frame)
    assert list(shown["key"]) == ["k1", NO_KEY]
    assert list(shown["transition-from"]) == ["", ""]
