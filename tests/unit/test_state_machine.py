"""Every transition, allowed and forbidden, and rebuilding orders from events."""

from __future__ import annotations

import itertools

import pytest

from order_system.errors import InvalidEvent, InvalidTransition
from order_system.events import OrderEvent, OrderStatus
from order_system.state_machine import (
    TERMINAL, TRANSITIONS, Order, OrderBook, Outcome, check_transition, rebuild, rebuild_order, transition_table,
)

S = OrderStatus
ALLOWED = {(None, S.CREATED), (S.CREATED, S.PAID), (S.CREATED, S.CANCELLED), (S.PAID, S.SHIPPED),
           (S.PAID, S.CANCELLED), (S.SHIPPED, S.DELIVERED)}


@pytest.mark.parametrize(("current", "requested"), list(itertools.product([None, *S], S)))
def test_every_pair_of_statuses(current: OrderStatus | None, requested: OrderStatus) -> None:
    if (current, requested) in ALLOWED:
        check_transition("o-1", current, requested)
        return
    with pytest.raises(InvalidTransition) as raised:
        check_transition("o-1", current, requested)
    message = str(raised.value)
    assert "o-1" in message and requested.value in message
    assert (current.value if current else "(no order yet)") in message
    assert (raised.value.current, raised.value.requested) == (current, requested)


def test_table_is_data_a_notebook_can_print() -> None:
    rows = transition_table()
    assert len(rows) == 6
    assert {(r["from"], r["to"]) for r in rows} == {("(new)" if a is None else a.value, b.value) for a, b in ALLOWED}
    assert TERMINAL == {S.DELIVERED, S.CANCELLED}
    with pytest.raises(TypeError):
        TRANSITIONS[S.DELIVERED] = frozenset({S.PAID})  # type: ignore[index]


def life(order_id: str = "o-1", customer: str = "c-1") -> list[OrderEvent]:
    return [OrderEvent.created(order_id, customer), OrderEvent.paid(order_id, customer, 2),
            OrderEvent.shipped(order_id, customer, 3), OrderEvent.delivered(order_id, customer, 4)]


def test_full_lifecycle_rebuilds_state_and_history() -> None:
    result = rebuild(life("a") + life("b")[:2])
    assert {k: o.status for k, o in result.orders.items()} == {"a": S.DELIVERED, "b": S.PAID}
    order = result.orders["a"]
    assert order.version == 4 and order.is_terminal and len(order.history) == 4
    assert order.created_at <= order.updated_at
    assert not (result.duplicates or result.gaps or result.rejected)


@pytest.mark.parametrize("after", [1, 2])
def test_cancel_from_created_or_paid(after: int) -> None:
    events = life()[:after] + [OrderEvent.cancelled("o-1", "c-1", after + 1)]
    order = rebuild_order(events, "o-1")
    assert order is not None and order.status is S.CANCELLED and order.is_terminal


def test_replayed_duplicates_are_skipped() -> None:
    events = life("a") + life("b")
    once, twice = rebuild(events), rebuild(events + events)
    assert once.orders == twice.orders
    assert len(twice.duplicates) == len(events)


def test_gap_is_reported() -> None:
    events = life()
    result = rebuild([events[0], events[2]])  # CREATED v1, then SHIPPED v3: a gap and a forbidden step
    assert [(g.expected, g.got) for g in result.gaps] == []
    assert len(result.rejected) == 1 and "CREATED to SHIPPED" in result.rejected[0][1]
    gap = rebuild([events[0], OrderEvent.paid("o-1", "c-1", 3)])
    assert [(g.order_id, g.expected, g.got) for g in gap.gaps] == [("o-1", 2, 3)]
    assert gap.orders["o-1"].status is S.PAID


def test_forbidden_step_in_replay_is_rejected_not_applied() -> None:
    result = rebuild(life() + [OrderEvent.cancelled("o-1", "c-1", 5)])
    assert result.orders["o-1"].status is S.DELIVERED
    assert "DELIVERED to CANCELLED" in result.rejected[0][1]


def test_customer_mismatch_is_rejected() -> None:
    order = Order.start(OrderEvent.created("o-1", "alice"))
    with pytest.raises(InvalidEvent, match="belongs to customer alice, not mallory") as raised:
        order.apply(OrderEvent.paid("o-1", "mallory", 2))
    assert raised.value.reason == "customer-mismatch"


def test_order_book_outcomes() -> None:
    book = OrderBook()
    first = life()[0]
    assert book.apply(first) is Outcome.APPLIED
    assert book.apply(first) is Outcome.DUPLICATE
    with pytest.raises(InvalidTransition):
        book.apply(OrderEvent.delivered("o-1", "c-1", 2))
    assert len(book) == 1 and book.get("o-1").status is S.CREATED  # type: ignore[union-attr]
