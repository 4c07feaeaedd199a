"""The three groups' logic, fed events directly (their Kafka wiring is tested in integration)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from order_system.domain.errors import InvalidEvent, InvalidTransition
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.config import Settings
from order_system.domain.changelog import Verdict, order_from_json
from order_system.kafka.consumer import Received
from order_system.services.analytics import AnalyticsService
from order_system.services.notifications import NotificationService
from order_system.services.processor import OrderProcessor


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
    assert processor.effect_counts() == {
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
    assert "payment-refunded" not in processor.effect_counts()


def test_redelivered_events_change_nothing() -> None:
    processor = OrderProcessor()
    events = lifecycle("a1")
    for event in events:
        processor.handle(event)
    before = (processor.statuses(), processor.effect_counts())
    replies = [processor.handle(event) for event in events]
    assert all("duplicate" in reply for reply in replies)
    assert (processor.statuses(), processor.effect_counts()) == before


def test_forbidden_transition_raises_and_records_nothing() -> None:
    processor = OrderProcessor()
    processor.handle(OrderEvent.created("x9", "c-1"))
    with pytest.raises(InvalidTransition, match="x9.*CREATED.*SHIPPED"):
        processor.handle(OrderEvent.shipped("x9", "c-1", 2))
    with pytest.raises(InvalidTransition):
        processor.handle(OrderEvent.paid("never-created", "c-1", 2))
    assert processor.statuses() == {"x9": OrderStatus.CREATED}
    assert processor.version("x9") == 1


def test_a_version_gap_is_refused_and_records_nothing() -> None:
    """Policy change: a gap used to be applied (and noted); now it is dead-lettered."""
    processor = OrderProcessor()
    processor.handle(OrderEvent.created("g1", "c-1"))
    with pytest.raises(InvalidEvent, match="g1 is at v1; v3 is not the next version") as raised:
        processor.handle(OrderEvent.paid("g1", "c-1", 3))
    assert raised.value.reason == "version-gap"
    assert processor.statuses()["g1"] is OrderStatus.CREATED and processor.version("g1") == 1
    with pytest.raises(InvalidEvent, match="v2 is not the next version") as first:
        processor.handle(OrderEvent.for_status(OrderStatus.CREATED, "never1", "c-1", 2))
    assert first.value.reason == "version-gap" and processor.get("never1") is None


def test_get_history_and_effects_agree_after_v1_v3_v2() -> None:
    """v1 CREATED, v3 PAID, v2 SHIPPED: v3 is a gap, v2 a forbidden step; nothing disagrees."""
    processor = OrderProcessor()
    created = OrderEvent.created("h1", "c-1")
    processor.handle(created)
    with pytest.raises(InvalidEvent, match="not the next version"):
        processor.handle(OrderEvent.paid("h1", "c-1", 3))
    with pytest.raises(InvalidTransition, match="CREATED to SHIPPED"):
        processor.handle(OrderEvent.shipped("h1", "c-1", 2))
    order = processor.get("h1")
    assert order is not None and (order.status, order.version, order.history) == (OrderStatus.CREATED, 1, (created,))
    assert processor.orders_frame()["version"].tolist() == [1]
    assert set(processor.effects_frame()["event_id"]) == {str(created.event_id)}


def test_same_version_with_another_event_id_is_a_conflict_not_a_duplicate() -> None:
    processor = OrderProcessor()
    created, paid = lifecycle("k1")[:2]
    for event in (created, paid):
        processor.handle(event)
    assert "duplicate" in processor.handle(paid) and processor.duplicates == 1
    with pytest.raises(InvalidEvent, match="k1 v2 is already event") as raised:
        processor.handle(OrderEvent.cancelled("k1", "c-1", 2))
    assert raised.value.reason == "version-conflict"
    with pytest.raises(InvalidEvent) as late:  # a late lower version, another eventId
        processor.handle(OrderEvent.paid("k1", "c-1", 1))
    assert late.value.reason == "version-conflict"
    assert processor.statuses() == {"k1": OrderStatus.PAID} and processor.duplicates == 1
    order = processor.get("k1")
    assert order is not None and [e.event_id for e in order.history] == [created.event_id, paid.event_id]


def test_notifications_and_analytics_refuse_conflicts_but_allow_gaps() -> None:
    service, analytics = NotificationService(), AnalyticsService()
    created, paid = lifecycle("m1")[:2]
    conflicting = OrderEvent.cancelled("m1", "c-1", 2)
    for consumer in (service.notify, analytics.observe):
        consumer(paid)  # v2 before v1: a retried v1 may come later on purpose
        consumer(created)
        assert "already" in consumer(paid)
        with pytest.raises(InvalidEvent) as raised:
            consumer(conflicting)
        assert raised.value.reason == "version-conflict"
    assert service.count() == 2 and analytics.events_seen == 2


def test_processor_state_is_restored_per_partition_and_forgotten() -> None:
    first = OrderProcessor(instance_id="unit-a")
    events = lifecycle("p1")[:2]
    for event in events:
        first.handle(event)
    second = OrderProcessor(instance_id="unit-b")  # the partition's next owner, restored from the changelog
    second.restore({0: {"p1": first.get("p1")}})
    assert second.statuses() == {"p1": OrderStatus.PAID} and second.partitions == [0]
    assert "duplicate" in second.handle(events[1])  # the same event again (a fresh v2 would conflict)
    second.forget([0])
    assert second.statuses() == {} and second.get("p1") is None


def _record(partition: int, offset: int, value: bytes | None, key: bytes | None) -> Received:
    return Received("orders", partition, offset, key.decode() if key else None, 0, {}, value, key)


def test_process_writes_a_verdict_per_record_and_changes_state_only_on_commit() -> None:
    settings = Settings(topic="orders")
    created, paid = lifecycle("q1")[:2]
    processor = OrderProcessor(instance_id="unit")
    records = [_record(1, 10, created.to_json(), b"q1"), _record(1, 11, paid.to_json(), b"q1"),
               _record(1, 12, paid.to_json(), b"q1"), _record(1, 13, b"junk", b"q1"),
               _record(1, 14, OrderEvent.delivered("q1", "c-1", 3).to_json(), b"q1")]
    batch = processor.process(records, settings, sleep=lambda s: None)
    verdicts = [Verdict.from_json(o.value) for o in batch.outputs if o.topic == settings.verdicts_topic]
    assert [(v.offset, v.outcome.value, v.reason) for v in verdicts] == [
        (10, "accepted", None), (11, "accepted", None), (12, "duplicate", None), (13, "rejected", "not-json"),
        (14, "rejected", "invalid-transition")]
    assert all(o.partition == 1 for o in batch.outputs)  # co-partitioned with the input record
    states = [order_from_json(o.value) for o in batch.outputs if o.topic == settings.state_topic]
    assert [(s.order_id, s.version) for s in states] == [("q1", 2)]  # once per batch, as it ends
    effects = [o for o in batch.outputs if o.topic == settings.effects_topic]
    assert len(effects) == 3  # inventory checked and reserved, shipping prepared
    dead = [o for o in batch.outputs if o.topic == settings.dead_letter_topic]
    assert [dict(o.headers)["dlt-reason"] for o in dead] == [b"not-json", b"invalid-transition"]
    assert (batch.handled, batch.dead_lettered) == (5, 2)
    assert processor.get("q1") is None and processor.effect_counts() == {}  # nothing before the commit
    batch.on_commit()
    assert processor.version("q1") == 2 and processor.duplicates == 1
    assert processor.effect_counts()["shipping-prepared"] == 1


def test_a_failing_step_is_tried_in_place_then_rejected() -> None:
    calls = []

    def flaky(event: OrderEvent, order: object) -> list:
        calls.append(event.order_id)
        if len(calls) < 3:
            raise TimeoutError("inventory service timed out")
        return []

    processor = OrderProcessor(instance_id="unit", attempts=3, backoff=0.01)
    processor.steps = {**OrderProcessor.steps, OrderStatus.CREATED: (flaky, "created")}
    waits: list[float] = []
    batch = processor.process([_record(0, 0, OrderEvent.created("r1", "c-1").to_json(), b"r1")],
                              Settings(topic="orders"), sleep=waits.append)
    assert len(calls) == 3 and waits == [0.01, 0.02] and batch.retried == 2 and batch.dead_lettered == 0
    failing = OrderProcessor(instance_id="unit", attempts=2, backoff=0.01)
    failing.steps = {**OrderProcessor.steps, OrderStatus.CREATED: (lambda e, o: 1 / 0, "created")}
    batch = failing.process([_record(0, 0, OrderEvent.created("r2", "c-1").to_json(), b"r2")],
                            Settings(topic="orders"), sleep=waits.append)
    verdict = Verdict.from_json(batch.outputs[0].value)
    assert (verdict.outcome.value, verdict.reason, batch.dead_lettered) == ("rejected", "handler-error", 1)
    assert dict(batch.outputs[1].headers)["dlt-attempts"] == b"2"


def test_a_spring_event_gets_its_version_from_the_pending_batch() -> None:
    settings = Settings(topic="orders")
    spring = [json.dumps({"orderId": "s1", "customerId": "c-1", "status": status,
                          "timestamp": "2024-01-15T10:30:00"}).encode() for status in ("CREATED", "PAID")]
    processor = OrderProcessor(instance_id="unit")
    batch = processor.process([_record(2, i, value, b"s1") for i, value in enumerate(spring)], settings,
                              sleep=lambda s: None)
    batch.on_commit()
    assert processor.version("s1") == 2 and processor.get("s1").status is OrderStatus.PAID


def test_instance_ids_are_bounded() -> None:
    assert OrderProcessor(instance_id="host-1").transactional_id == "order-processor-host-1"
    for bad in ("", "x" * 201, "line\nbreak"):
        with pytest.raises(ValueError, match="instance id"):
            OrderProcessor(instance_id=bad)


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


def test_the_processor_runner_keeps_the_consumer_runner_surface() -> None:
    from order_system.kafka.retry import InPlaceRetry
    from order_system.bootstrap import runner_for

    runner = runner_for(OrderProcessor(instance_id="surface"), Settings(topic="orders"))  # connects to nothing yet
    for name in ("start", "stop", "join", "running", "stopping", "wait_assigned", "wait_until", "processed", "skipped",
                 "dead_lettered", "stuck", "errors", "failures", "assignment", "name", "group_id", "topics",
                 "__enter__", "__exit__"):
        assert hasattr(runner, name), name
    assert (runner.group_id, runner.topics, runner.running) == ("order-processor", ["orders"], False)
    with pytest.raises(ValueError, match="retries in place"):
        runner_for(OrderProcessor(instance_id="surface"), Settings(), failure_policy=InPlaceRetry())
