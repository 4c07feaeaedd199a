"""The three groups' logic, fed events directly (their Kafka wiring is tested in integration)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from order_system.errors import InvalidTransition
from order_system.events import OrderEvent, OrderStatus
from order_system.groups import AnalyticsService, NotificationService, OrderProcessor
from order_system.store import OrderStore


def lifecycle(order_id: str, customer: str = "c-1", cancel_after_paid: bool = False) -> list[OrderEvent]:
    created = OrderEvent.created(order_id, customer)
    paid = OrderEvent.paid(order_id, customer, 2)
    if cancel_after_paid:
        return [created, paid, OrderEvent.cancelled(order_id, customer, 3)]
    return [created, paid, OrderEvent.shipped(order_id, customer, 3), OrderEvent.delivered(order_id, customer, 4)]


def test_processor_runs_each_business_step_once() -> None:
    processor = OrderProcessor()
    results = [processor.handle(e) for e in lifecycle("a1") + lifecycle("b2", cancel_after_paid=True)]
    assert "inventory reserved" in results[0] and "is CREATED" in results[0]
    assert processor.statuses() == {"a1": OrderStatus.DELIVERED, "b2": OrderStatus.CANCELLED}
    assert processor.store.effect_counts() == {
        "inventory-checked": 2, "inventory-reserved": 2, "shipping-prepared": 2, "tracking-started": 1,
        "order-completed": 1, "inventory-restored": 1, "payment-refunded": 1,
    }
    order = processor.get("a1")
    assert order is not None and [e.status for e in order.history] == [
        OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED]


def test_cancel_before_payment_refunds_nothing() -> None:
    processor = OrderProcessor()
    processor.handle(OrderEvent.created("c3", "c-1"))
    processor.handle(OrderEvent.cancelled("c3", "c-1", 2))
    assert "payment-refunded" not in processor.store.effect_counts()


def test_redelivered_events_change_nothing() -> None:
    processor = OrderProcessor()
    events = lifecycle("a1")
    for event in events:
        processor.handle(event)
    before = (processor.statuses(), processor.store.effect_counts())
    replies = [processor.handle(event) for event in events]
    assert all("duplicate" in reply for reply in replies)
    assert (processor.statuses(), processor.store.effect_counts()) == before


def test_forbidden_transition_raises_and_records_nothing() -> None:
    processor = OrderProcessor()
    processor.handle(OrderEvent.created("x9", "c-1"))
    with pytest.raises(InvalidTransition, match="x9.*CREATED.*SHIPPED"):
        processor.handle(OrderEvent.shipped("x9", "c-1", 2))
    with pytest.raises(InvalidTransition):
        processor.handle(OrderEvent.paid("never-created", "c-1", 2))
    assert processor.statuses() == {"x9": OrderStatus.CREATED}
    assert processor.version("x9") == 1


def test_version_gap_is_reported_but_allowed_transition_applies() -> None:
    processor = OrderProcessor()
    processor.handle(OrderEvent.created("g1", "c-1"))
    reply = processor.handle(OrderEvent.paid("g1", "c-1", 3))
    assert "version gap: expected v2, got v3" in reply
    assert processor.gaps == [("g1", 2, 3)]
    assert processor.statuses()["g1"] is OrderStatus.PAID


def test_processor_state_survives_in_a_file(tmp_path) -> None:
    path = tmp_path / "processor.db"
    first = OrderProcessor(path)
    for event in lifecycle("p1")[:2]:
        first.handle(event)
    first.store.close()
    second = OrderProcessor(OrderStore(path))
    assert second.statuses() == {"p1": OrderStatus.PAID}
    assert "duplicate" in second.handle(lifecycle("p1")[1])


def test_notifications_once_per_transition() -> None:
    service = NotificationService()
    events = lifecycle("n1", customer="alice")
    for event in events + events:
        service.notify(event)
    log = service.log()
    assert service.count() == 4 and len(log) == 4
    assert log["message"].iloc[1] == "to alice: Payment for order n1 is confirmed."


def test_analytics_counts_customers_and_time_in_state() -> None:
    analytics = AnalyticsService()
    start = OrderEvent.created("t1", "bob").timestamp
    events = [
        OrderEvent.created("t1", "bob").model_copy(update={"timestamp": start}),
        OrderEvent.paid("t1", "bob", 2).model_copy(update={"timestamp": start + timedelta(seconds=4)}),
        OrderEvent.shipped("t1", "bob", 3).model_copy(update={"timestamp": start + timedelta(seconds=10)}),
        OrderEvent.created("t2", "bob"),
        OrderEvent.created("t3", "carol"),
    ]
    for event in events + events[:1]:
        analytics.observe(event)
    assert analytics.events_seen == 5
    counts = analytics.status_counts()
    assert counts.loc["CREATED", "events"] == 3 and counts.loc["SHIPPED", "orders_now"] == 1
    assert analytics.orders_per_customer()["orders"].to_dict() == {"bob": 2, "carol": 1}
    times = analytics.time_in_state()
    assert times.loc["CREATED", "mean_s"] == pytest.approx(4.0)
    assert times.loc["PAID", "max_s"] == pytest.approx(6.0)
