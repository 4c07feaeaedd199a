"""The order pipeline against the real broker: keys, partitions, order and consumer groups."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import pytest

from order_system.config import Settings
from order_system.kafka.consumer import ConsumerRunner, Received, run_groups
from order_system.kafka.dead_letters import read_dead_letters
from order_system.domain.errors import PublishError
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.services.analytics import AnalyticsService
from order_system.services.notifications import NotificationService
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for
from order_system.kafka.changelog_reader import read_effects, read_order_state
from order_system.kafka.lag import consumer_lag, wait_for_zero_lag
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.domain.state_machine import rebuild


def publish_all(settings: Settings, events: list[OrderEvent], keyed: bool = True, **config: object) -> list:
    with OrderProducer(settings, extra_config=config) as producer:
        futures = [producer.publish(event, keyed=keyed) for event in events]
    return [future.result(timeout=30) for future in futures]


def final_states(events: list[OrderEvent]) -> dict[str, OrderStatus]:
    return {order_id: order.status for order_id, order in rebuild(events).orders.items()}


def test_200_interleaved_orders_stay_on_one_partition_in_order(topic_settings: Settings) -> None:
    events = plan_lifecycles(200, seed=7)
    deliveries = publish_all(topic_settings, events)

    placed: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # order -> (partition, offset, version)
    for delivery in deliveries:
        placed[delivery.event.order_id].append((delivery.partition, delivery.offset, delivery.event.version))
    assert len(placed) == 200
    for order_id, spots in placed.items():
        assert len({partition for partition, _, _ in spots}) == 1, f"{order_id} spread over partitions: {spots}"
        by_offset = sorted(spots, key=lambda s: s[1])
        assert [v for _, _, v in by_offset] == list(range(1, len(spots) + 1)), f"{order_id} out of order"
    assert len({d.partition for d in deliveries}) == 3  # the orders as a whole use every partition

    processor, notifications, analytics = OrderProcessor(), NotificationService(), AnalyticsService()
    groups = (processor, notifications, analytics)
    with run_groups(*(runner_for(g, topic_settings) for g in groups)) as runners:
        lag = wait_for_zero_lag(topic_settings, [g.group_id for g in groups], timeout=90)
        assert all(r.dead_lettered == 0 for r in runners)
    asked, answered = lag[lag["group"] != notifications.group_id], lag[lag["group"] == notifications.group_id]
    assert (len(lag) == 9 and set(asked["topic"]) == {topic_settings.topic}
            and asked["end_offset"].sum() == 2 * len(events))
    # notification-service reads the verdicts: one per event, plus the processor's transaction markers
    assert set(answered["topic"]) == {topic_settings.verdicts_topic} and answered["end_offset"].sum() > len(events)

    expected = final_states(events)
    assert processor.statuses() == expected
    assert notifications.count() == len(events)
    assert analytics.events_seen == len(events)
    counts = analytics.status_counts()
    assert counts["orders_now"].sum() == 200
    assert counts.loc["DELIVERED", "orders_now"] == sum(1 for s in expected.values() if s is OrderStatus.DELIVERED)
    assert processor.effect_counts()["inventory-reserved"] == 200
    effects = read_effects(topic_settings)  # what a read_committed reader sees: each effect once
    assert (effects["kind"] == "inventory-reserved").sum() == 200
    assert not effects.duplicated(["event_id", "kind"]).any()
    assert {o: s.status for o, s in read_order_state(topic_settings).items()} == expected


def test_without_a_key_events_spread_and_the_processor_meets_them_out_of_order(topic_settings: Settings) -> None:
    """The tutorial's warning, proven: spread over partitions, PAID can be read before CREATED."""
    events = plan_lifecycles(30, seed=3, interleave=False, cancel_every=0)
    # librdkafka sticks keyless records to one partition for a few ms; 0 picks one per record
    deliveries = publish_all(topic_settings, events, keyed=False, **{"sticky.partitioning.linger.ms": 0})
    partitions: dict[str, set[int]] = defaultdict(set)
    for delivery in deliveries:
        assert delivery.key is None
        partitions[delivery.event.order_id].add(delivery.partition)
    spread = [order for order, used in partitions.items() if len(used) > 1]
    assert len(spread) >= 20, f"only {len(spread)} of 30 orders spread over partitions"

    processor = OrderProcessor()
    runner = runner_for(processor, topic_settings, require_key=False)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed >= len(events), timeout=60)
    dead = read_dead_letters(topic_settings)
    invalid = dead[dead["reason"] == "invalid-transition"]
    assert runner.dead_lettered == len(dead) == len(invalid) > 0
    assert processor.statuses() != final_states(events)  # the orders did not end where they should
    assert set(invalid["transition-to"]) <= {"PAID", "SHIPPED", "DELIVERED"}


def test_keyless_records_are_dead_lettered_by_default(topic_settings: Settings) -> None:
    events = plan_lifecycles(3, seed=4, cancel_every=0)
    publish_all(topic_settings, events, keyed=False)
    runner = runner_for(OrderProcessor(), topic_settings)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.dead_lettered >= len(events), timeout=60)
    assert set(read_dead_letters(topic_settings)["reason"]) == {"missing-key"}


class RecommendationService:
    """A fourth group, written in a test: nothing else changes."""

    group_id = "recommendation-service"

    def __init__(self) -> None:
        self.bought: dict[str, int] = defaultdict(int)

    def handlers(self) -> Mapping[OrderStatus, Callable[[OrderEvent, Received], str]]:
        return {OrderStatus.DELIVERED: self.on_delivered, OrderStatus.CREATED: self.on_created}

    def on_created(self, event: OrderEvent, received: Received) -> str:
        return f"noted interest of {event.customer_id}"

    def on_delivered(self, event: OrderEvent, received: Received) -> str:
        self.bought[event.customer_id] += 1
        return f"recommend more to {event.customer_id}"


def test_a_fourth_group_sees_every_event_without_touching_the_others(topic_settings: Settings) -> None:
    events = plan_lifecycles(40, seed=11)
    publish_all(topic_settings, events)
    processor, notifications = OrderProcessor(), NotificationService()
    with run_groups(runner_for(processor, topic_settings), runner_for(notifications, topic_settings)):
        wait_for_zero_lag(topic_settings, [processor.group_id, notifications.group_id], timeout=60)

    recommendations = RecommendationService()
    fourth = runner_for(recommendations, topic_settings)
    with run_groups(fourth):
        assert fourth.wait_until(lambda: fourth.processed + fourth.skipped >= len(events), timeout=60)
    delivered = [e for e in events if e.status is OrderStatus.DELIVERED]
    assert sum(recommendations.bought.values()) == len(delivered)
    assert fourth.processed + fourth.skipped == len(events)
    lag = consumer_lag(topic_settings, [processor.group_id, notifications.group_id, recommendations.group_id])
    assert (lag["lag"] == 0).all()
    assert notifications.count() == len(events)  # the other groups saw no more and no less


def test_two_consumers_split_partitions_and_hand_over_without_loss(topic_settings: Settings) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def handlers(name: str) -> dict:
        return {s: (lambda event, received, n=name: seen[n].append(str(event.event_id)) or "ok") for s in OrderStatus}

    def all_seen(events: list[OrderEvent]) -> bool:
        return {str(e.event_id) for e in events} <= set(seen["a"]) | set(seen["b"])

    group = f"split-{topic_settings.topic}"
    a = ConsumerRunner(topic_settings, group, handlers("a"), name="member-a")
    b = ConsumerRunner(topic_settings, group, handlers("b"), name="member-b")
    with run_groups(a, b):
        assert a.wait_until(lambda: len(a.assignment) + len(b.assignment) == 3 and bool(a.assignment)
                            and bool(b.assignment), timeout=60), (a.assignment, b.assignment)
        assert not set(a.assignment) & set(b.assignment)
        assert {p for _, p in a.assignment + b.assignment} == {0, 1, 2}
        first_half = plan_lifecycles(30, seed=21)  # these orders use all three partitions
        publish_all(topic_settings, first_half)
        assert a.wait_until(lambda: all_seen(first_half), timeout=60)
        assert seen["a"] and seen["b"]  # both members did part of the work

        a.stop()
        assert b.wait_until(lambda: len(b.assignment) == 3, timeout=60), b.assignment
        second_half = plan_lifecycles(30, seed=22)
        publish_all(topic_settings, second_half)
        assert b.wait_until(lambda: all_seen(second_half), timeout=60)
    everything = {str(e.event_id) for e in first_half + second_half}
    assert everything == set(seen["a"]) | set(seen["b"])  # nothing lost, nothing foreign


def test_delivery_failure_reaches_the_caller(settings: Settings, unique: Callable[[str], str]) -> None:
    missing = settings.with_topic(unique("no-such-topic"))
    with OrderProducer(missing, extra_config={"delivery.timeout.ms": 1500}) as producer:
        future = producer.publish(OrderEvent.created("abc12345", "c-1"))
        with pytest.raises(PublishError, match="order abc12345 was not delivered"):
            future.result(timeout=30)
