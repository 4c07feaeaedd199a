"""Every transition, allowed and forbidden, and rebuilding orders from events."""

from __future__ import annotations

import itertools
import uuid

import pytest

from order_system.domain.errors import InvalidEvent, InvalidTransition
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.domain.state_machine import (
    TERMINAL, TRANSITIONS, Order, OrderBook, Outcome, VersionGap, allowed_next, check_transition, check_version,
    rebuild, rebuild_order, transition_table,
)

S = OrderStatus
ALLOWED = {(None, S.CREATED), (S.CREATED, S.PAID), (S.CREATED, S.CANCELLED), (S.PAID, S.SHIPPED),
           (S.PAID, S.CANCELLED), (S.SHIPPED, S.DELIVERED)}


@pytest.mark.parametrize(("current", "requested"), list(itertools.product([None, *S], S)))
def test_every_pair_of_statuses(current: OrderStatus | None, requested: OrderStatus) -> None:
    if (current, requested) in ALLOWED:
        assert check_transition("o-1", current, requested) is None
        assert requested in allowed_next(current)
        return
    assert requested not in allowed_next(current)
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


def test_gap_is_reported_and_refused() -> None:
    """Policy change: a gap used to be applied; now it is refused (and still reported)."""
    events = life()
    result = rebuild([events[0], events[2]])  # CREATED v1, then SHIPPED v3: a forbidden step (and a gap)
    assert [(g.expected, g.got) for g in result.gaps] == []
    assert len(result.rejected) == 1 and "CREATED to SHIPPED" in result.rejected[0][1]
    gap = rebuild([events[0], OrderEvent.paid("o-1", "c-1", 3)])
    assert [(g.order_id, g.expected, g.got) for g in gap.gaps] == [("o-1", 2, 3)]
    assert "v3 is not the next version (v2)" in gap.rejected[0][1]
    assert gap.orders["o-1"].status is S.CREATED and gap.orders["o-1"].version == 1


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


def test_a_late_version_after_a_gap_fills_it() -> None:
    """Policy change: the gap (v3) is refused, so the late v2 is the next version and applies;
    a v3 that comes after it applies too. Only the same eventId is a duplicate."""
    created, paid, shipped, _ = life()
    early = OrderEvent.paid("o-1", "c-1", 3)
    result = rebuild([created, early, paid, shipped, shipped])
    assert result.duplicates == [shipped]
    assert [event for event, _ in result.rejected] == [early]
    assert result.gaps == [VersionGap("o-1", 2, 3)]
    assert [e.status for e in result.orders["o-1"].history] == [S.CREATED, S.PAID, S.SHIPPED]


def test_same_version_with_another_event_id_is_a_conflict() -> None:
    created, paid = life()[:2]
    cancelled = OrderEvent.cancelled("o-1", "c-1", 2)
    result = rebuild([created, paid, cancelled, OrderEvent.created("o-1", "c-1")])
    assert [(event.status, why.split(" is already")[0]) for event, why in result.rejected] == [
        (S.CANCELLED, "order o-1 v2"), (S.CREATED, "order o-1 v1")]
    assert result.orders["o-1"].status is S.PAID and not result.duplicates
    with pytest.raises(InvalidEvent) as raised:
        Order.start(created).apply(paid).apply(cancelled)
    assert raised.value.reason == "version-conflict"


def test_check_version_is_the_policy() -> None:
    event = OrderEvent.paid("o-1", "c-1", 2)
    assert check_version(event, None, 1) is True  # the next version
    assert check_version(event, event.event_id, 2) is False  # a duplicate
    assert check_version(event, None) is True  # no order state kept: gaps allowed
    for applied, current, reason in [(uuid.uuid4(), 2, "version-conflict"), (None, 0, "version-gap"),
                                     (None, 5, "version-conflict"), (uuid.uuid4(), None, "version-conflict")]:
        with pytest.raises(InvalidEvent) as raised:
            check_version(event, applied, current)
        assert raised.value.reason == reason


def test_first_event_must_be_created_with_version_1() -> None:
    with pytest.raises(InvalidTransition, match=r"order o-1: cannot go from \(no order yet\) to PAID"):
        Order.start(OrderEvent.paid("o-1", "c-1", 2))
    late_start = rebuild([OrderEvent.for_status(S.CREATED, "o-1", "c-1", 2)])  # policy change: refused
    assert late_start.orders == {} and late_start.gaps == [VersionGap("o-1", 1, 2)]


def test_event_for_another_order_is_refused() -> None:
    order = Order.start(OrderEvent.created("o-1", "c-1"))
    with pytest.raises(InvalidEvent, match="o-2.*o-1") as raised:
        order.apply(OrderEvent.paid("o-2", "c-1", 2))
    assert raised.value.reason == "order-mismatch"


def test_apply_returns_a_new_order_and_keeps_the_old() -> None:
    created, paid = life()[:2]
    first = Order.start(created)
    second = first.apply(paid)
    assert (first.status, first.version, len(first.history)) == (S.CREATED, 1, 1)
    assert (second.status, second.version, second.history) == (S.PAID, 2, (created, paid))
    assert second.created_at == created.timestamp and second.updated_at == paid.timestamp


def test_customer_mismatch_in_replay_is_rejected() -> None:
    result = rebuild([OrderEvent.created("o-1", "alice"), OrderEvent.paid("o-1", "mallory", 2)])
    assert result.orders["o-1"].status is S.CREATED
    assert len(result.rejected) == 1 and "mallory" in result.rejected[0][1]


def test_order_book_records_gaps_and_lists_orders() -> None:
    book = OrderBook()
    for event in [*life("a")[:1], *life("b")[:2]]:
        assert book.apply(event) is Outcome.APPLIED
    with pytest.raises(InvalidEvent, match="not the next version"):
        book.apply(OrderEvent.paid("a", "c-1", 3))
    assert book.gaps == [VersionGap("a", 2, 3)] and book.get("a").version == 1  # type: ignore[union-attr]
    assert [o.order_id for o in book.orders()] == ["a", "b"] and len(book) == 2
    assert book.get("missing") is None


def test_rebuild_order_ignores_other_orders() -> None:
    order = rebuild_order(life("a") + life("b")[:2], "b")
    assert order is not None and (order.order_id, order.status, order.version) == ("b", S.PAID, 2)
    assert rebuild_order(life("a"), "nope") is None
