"""OrderProducer against the real broker: keys, partitions, delivery futures and closing."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

from order_system.config import Settings
from order_system.domain.errors import PublishError
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.kafka.producer import Delivery, OrderProducer
from order_system.local.demo import plan_lifecycles, publish_lifecycles


def one_order(events: int, order_id: str = "one00001") -> list[OrderEvent]:
    """``events`` events of a single order (their statuses do not matter to the producer)."""
    return [OrderEvent.for_status(OrderStatus.PAID, order_id, "customer-1", v) for v in range(1, events + 1)]


def test_plan_lifecycles_is_deterministic_and_keeps_each_order_in_version_order() -> None:
    first, again = plan_lifecycles(20, seed=5), plan_lifecycles(20, seed=5)
    assert [(e.order_id, e.status, e.version) for e in first] == [(e.order_id, e.status, e.version) for e in again]

    lives: dict[str, list[OrderEvent]] = defaultdict(list)
    for event in first:
        lives[event.order_id].append(event)
    assert len(lives) == 20
    assert [e.order_id for e in first] != [e.order_id for e in plan_lifecycles(20, seed=5, interleave=False)]
    happy = [OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED]
    cancelled = 0
    for life in lives.values():
        assert [e.version for e in life] == list(range(1, len(life) + 1))
        statuses = [e.status for e in life]
        if statuses[-1] is OrderStatus.CANCELLED:
            cancelled += 1
            assert statuses[:-1] in (happy[:1], happy[:2])  # cancelled after CREATED or PAID
        else:
            assert statuses == happy
    assert cancelled == 4  # every 5th of 20


def test_keyed_events_resolve_with_partition_and_offset_and_an_order_stays_on_one_partition(
        topic_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="order_system.kafka.producer")
    seen: list[int] = []
    with OrderProducer(topic_settings) as producer:
        futures = publish_lifecycles(producer, 30, seed=1, progress=lambda done, total: seen.append(done))
        deliveries = [future.result(timeout=30) for future in futures]
    assert seen == list(range(1, len(futures) + 1))

    placed: dict[str, set[int]] = defaultdict(set)
    offsets: dict[int, list[int]] = defaultdict(list)
    for delivery in deliveries:
        assert isinstance(delivery, Delivery) and delivery.topic == topic_settings.topic
        assert delivery.event is not None and delivery.key == delivery.event.order_id.encode()
        placed[delivery.event.order_id].add(delivery.partition)
        offsets[delivery.partition].append(delivery.offset)
    assert all(len(partitions) == 1 for partitions in placed.values()), placed
    assert set(offsets) == {0, 1, 2}  # 30 orders use every partition
    for partition, used in offsets.items():  # a fresh topic: offsets 0..n-1, in publishing order
        assert used == list(range(len(used))), (partition, used)

    last = deliveries[-1]
    expected = (f"Published {last.event.event_type} for order {last.event.order_id} "
                f"-> partition {last.partition}, offset {last.offset}")
    assert expected in caplog.messages


def test_without_a_key_one_orders_events_spread_over_partitions(topic_settings: Settings) -> None:
    events = one_order(30)
    with OrderProducer(topic_settings) as keyed_producer:
        keyed = [f.result(timeout=30) for f in [keyed_producer.publish(e) for e in events]]
    assert len({d.partition for d in keyed}) == 1

    # For keyless records librdkafka's default partitioner sticks to one partition for up to
    # sticky.partitioning.linger.ms (10 ms by default), so a quick burst may land on a single
    # partition (it does with linger.ms=100); 0 picks a random partition for every record.
    with OrderProducer(topic_settings, extra_config={"sticky.partitioning.linger.ms": 0}) as producer:
        futures = [producer.publish(e, keyed=False) for e in events]
        pinned = producer.publish(events[0], partition=2).result(timeout=30)
        keyless = [f.result(timeout=30) for f in futures]
    assert all(d.key is None for d in keyless)
    spread = Counter(d.partition for d in keyless)
    assert len(spread) > 1, spread  # all 30 on one of 3 partitions by chance: p = 3 / 3**30
    assert pinned.partition == 2 and pinned.key == events[0].key()


def test_a_delivery_failure_reaches_the_future_and_the_callback(
        settings: Settings, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    missing = settings.with_topic(unique("no-such-topic"))  # never created; auto-create is off
    reported: list[tuple[Delivery | None, Exception | None]] = []
    with OrderProducer(missing, extra_config={"delivery.timeout.ms": 1500}) as producer:
        future = producer.publish(OrderEvent.created("abc12345", "c-1"),
                                  on_delivery=lambda d, e: reported.append((d, e)))
        with pytest.raises(PublishError, match=f"order abc12345 was not delivered to {missing.topic}: ") as failed:
            future.result(timeout=30)
    assert failed.value.order_id == "abc12345"
    assert reported == [(None, failed.value)]
    assert any(r.levelno == logging.ERROR and "abc12345" in r.getMessage() for r in caplog.records)


def test_close_flushes_everything_and_refuses_more(topic_settings: Settings) -> None:
    with OrderProducer(topic_settings) as producer:
        futures = [producer.publish(e) for e in plan_lifecycles(50, seed=2)]
    assert all(f.done() for f in futures)  # leaving the block flushed: nothing left to wait for
    assert producer.in_flight == 0 and all(f.exception() is None for f in futures)
    producer.close()  # a second close is harmless
    with pytest.raises(PublishError, match="closed"):
        producer.publish(OrderEvent.created("late0001", "c-1"))


def test_close_raises_if_records_are_still_undelivered(settings: Settings, unique: Callable[[str], str]) -> None:
    producer = OrderProducer(settings.with_topic(unique("no-such-topic")), extra_config={"delivery.timeout.ms": 1500})
    future = producer.publish(OrderEvent.created("abc12345", "c-1"))
    with pytest.raises(PublishError, match=r"1 record\(s\) were still undelivered"):
        producer.close(timeout=0.2)
    with pytest.raises(PublishError, match="abc12345"):  # the caller still learns which one failed
        future.result(timeout=30)


def test_a_broken_callback_does_not_stop_later_futures(topic_settings: Settings) -> None:
    def broken(delivery: Delivery | None, error: Exception | None) -> None:
        raise RuntimeError("bug in the caller's callback")

    with OrderProducer(topic_settings) as producer:
        first = producer.publish(OrderEvent.created("abc00001", "c-1"), on_delivery=broken)
        assert first.result(timeout=30).offset >= 0
        second = producer.publish(OrderEvent.created("abc00002", "c-1"))
        assert not second.cancel()  # a record handed to Kafka cannot be taken back
        assert second.result(timeout=30).event.order_id == "abc00002"  # no flush needed
