"""A real Spring Kafka client and this package on one topic, both ways.

The Java side (interop/spring) uses KafkaTemplate and a listener container with Spring's Jackson 3
JSON serializer and deserializer, as the original Spring service does.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import pytest

from order_system.config import Settings
from order_system.kafka.consumer import Received, run_groups
from order_system.kafka.dead_letters import read_dead_letters, replay
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for, standard_groups
from order_system.kafka.lag import wait_for_zero_lag
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.reader import read_records
from order_system.kafka.retry import InPlaceRetry, RetryTopics
from order_system.local.spring_client import JAVA_TYPE, SpringClient

pytestmark = pytest.mark.slow


def expected_id(settings: Settings, row: dict[str, Any]) -> uuid.UUID:
    """The eventId a Java record gets: from where it was written (see spring_compat)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{settings.topic}/{row['partition']}/{row['offset']}")


class FailsFirstAttempt:
    """A fourth group whose first attempt at every event fails: each goes round the retry topic."""

    group_id = "spring-interop-retrier"

    def __init__(self, main_topic: str) -> None:
        self.main_topic = main_topic
        self.first: dict[tuple[str, str], uuid.UUID] = {}
        self.retried: dict[tuple[str, str], uuid.UUID] = {}

    def handlers(self) -> dict:
        return {status: self.handle for status in OrderStatus}

    def handle(self, event: OrderEvent, received: Received) -> str:
        key = (event.order_id, event.status.value)
        if received.topic == self.main_topic:
            self.first[key] = event.event_id
            raise RuntimeError("first attempt fails on purpose")
        self.retried[key] = event.event_id
        return "handled on retry"


def test_spring_events_go_through_our_three_groups_in_order(topic_settings: Settings, spring: SpringClient) -> None:
    order_ids = [f"java{n:04d}" for n in range(36)]
    sent = spring.produce_tutorial(topic_settings, order_ids, cancel_every=6)
    assert len(sent) == 30 * 4 + 3 * 2 + 3 * 3
    records = read_records(topic_settings, topic_settings.topic)
    assert len(records) == len(sent)
    for record in records:  # really the tutorial's format, as Spring's serializer wrote it
        assert dict(record.headers() or [])["__TypeId__"] == JAVA_TYPE.encode()
        assert b"eventId" not in record.value() and b"version" not in record.value()

    processor, notifications, analytics = standard_groups()
    retrier = FailsFirstAttempt(topic_settings.topic)
    runners = [runner_for(g, topic_settings) for g in (processor, notifications, analytics)]
    runners.append(runner_for(retrier, topic_settings, failure_policy=RetryTopics(delays=(0.2,))))
    with run_groups(*runners):
        wait_for_zero_lag(topic_settings, [g.group_id for g in (processor, notifications, analytics)], timeout=90)
        assert runners[3].wait_until(lambda: len(retrier.retried) == len(sent), timeout=60)
    assert [r.dead_lettered for r in runners] == [0, 0, 0, 0]
    assert read_dead_letters(topic_settings).empty

    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sent:
        by_order[row["orderId"]].append(row)
    for order_id, rows in by_order.items():
        order = processor.get(order_id)
        assert order is not None, order_id
        assert [e.status.value for e in order.history] == [r["status"] for r in rows]
        assert [e.version for e in order.history] == list(range(1, len(rows) + 1))
        assert [e.event_id for e in order.history] == [expected_id(topic_settings, r) for r in rows]
        assert [e.timestamp for e in order.history] == [
            datetime.fromisoformat(r["timestamp"]).replace(tzinfo=timezone.utc) for r in rows]
        assert [e.description for e in order.history] == [r["description"] for r in rows]
    assert notifications.count() == len(sent)
    assert analytics.events_seen == len(sent)
    assert analytics.status_counts()["orders_now"].sum() == len(order_ids)
    # a record that went round the retry topic kept its identity
    assert retrier.retried == retrier.first
    assert set(retrier.first.values()) == {expected_id(topic_settings, r) for r in sent}


def test_a_replayed_spring_event_is_recognised_as_a_redelivery(topic_settings: Settings,
                                                                 spring: SpringClient) -> None:
    sent = spring.produce_tutorial(topic_settings, [f"replay{n:02d}" for n in range(4)])
    processor = OrderProcessor()

    def refuse(event: OrderEvent, received: Received) -> str:
        raise RuntimeError("this group refuses everything")

    refuser = runner_for(type("Refuser", (), {"group_id": "spring-interop-refuser",
                                              "handlers": lambda self: {s: refuse for s in OrderStatus}})(),
                         topic_settings, failure_policy=InPlaceRetry(attempts=1))
    processing = runner_for(processor, topic_settings)
    with run_groups(processing, refuser):
        assert refuser.wait_until(lambda: refuser.dead_lettered == len(sent), timeout=60)
        assert processing.wait_until(lambda: processing.processed == len(sent), timeout=60)
        effects, states = processor.effect_counts(), processor.statuses()
        assert replay(topic_settings) == len(sent)  # the refused records, back on the main topic
        assert processing.wait_until(lambda: processing.processed == 2 * len(sent), timeout=60)
        # refused again and replayed again (all of them: twice each): still the same events
        assert refuser.wait_until(lambda: refuser.dead_lettered == 2 * len(sent), timeout=60)
        assert replay(topic_settings) == 2 * len(sent)
        assert processing.wait_until(lambda: processing.processed == 4 * len(sent), timeout=60)
    assert processing.dead_lettered == 0  # not taken for new events (PAID after DELIVERED would be refused)
    assert processor.effect_counts() == effects and processor.statuses() == states
    assert all(order.status is OrderStatus.DELIVERED for order in map(processor.get, states))


def test_a_spring_listener_reads_every_event_we_write(topic_settings: Settings, spring: SpringClient,
                                                      unique) -> None:
    events = plan_lifecycles(12, seed=15)
    with OrderProducer(topic_settings) as producer:
        futures = [producer.publish(event) for event in events]
    deliveries = {(d.partition, d.offset): d for d in (f.result(timeout=30) for f in futures)}

    rows = spring.listen(topic_settings, unique("spring-listener"), len(events))
    assert len(rows) == len(events) and all("error" not in row for row in rows), rows[:3]
    for row in rows:
        event = deliveries[(row["partition"], row["offset"])].event
        assert event is not None and row["key"] == event.order_id and row["typeId"] is None
        assert row["type"] == "VersionedOrderEvent"
        read = row["event"]
        assert read == {"eventId": str(event.event_id), "orderId": event.order_id, "customerId": event.customer_id,
                        "status": event.status.value, "description": event.description,
                        "timestamp": read["timestamp"], "version": event.version}
        assert datetime.fromisoformat(read["timestamp"]) == event.timestamp

    # the tutorial's own record type reads them too: unknown fields are ignored, UTC becomes local time
    tutorial = spring.listen(topic_settings, unique("spring-tutorial-listener"), len(events), type_="tutorial")
    assert len(tutorial) == len(events) and all("error" not in row for row in tutorial), tutorial[:3]
    for row in tutorial:
        event = deliveries[(row["partition"], row["offset"])].event
        assert event is not None and row["type"] == "OrderEvent"
        assert row["event"]["orderId"] == event.order_id and row["event"]["status"] == event.status.value
        assert datetime.fromisoformat(row["event"]["timestamp"]) == event.timestamp.replace(tzinfo=None)
