"""ConsumerRunner against the real broker: order, commits on stop, failures, groups and lag."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest

from order_system.config import Settings
from order_system.kafka.consumer import ConsumerRunner, Handler, Received, run_groups
from order_system.domain.errors import InvalidEvent
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.kafka.lag import consumer_lag, wait_for_zero_lag
from order_system.kafka.producer import Delivery, OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.retry import InPlaceRetry


def publish(settings: Settings, events: list[OrderEvent]) -> list[Delivery]:
    with OrderProducer(settings) as producer:
        futures = [producer.publish(event) for event in events]
    return [future.result(timeout=30) for future in futures]


def every_status(handler: Handler) -> dict[OrderStatus, Handler]:
    return {status: handler for status in OrderStatus}


def ids(events: list[OrderEvent]) -> set[str]:
    return {str(e.event_id) for e in events}


def stop_while_held(runner: ConsumerRunner, gate: threading.Event) -> None:
    """Stop ``runner`` whose handler is waiting on ``gate``: ask first, then let the handler return."""
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    assert runner.wait_until(lambda: runner.stopping, timeout=10)
    gate.set()
    stopper.join(timeout=30)
    assert not runner.running


def test_handlers_see_each_partition_in_offset_order_and_unhandled_statuses_are_skipped(
        topic_settings: Settings, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="order_system.kafka.consumer")
    events = plan_lifecycles(30, seed=3)
    publish(topic_settings, events)
    calls: list[tuple[Received, OrderEvent]] = []

    def record(event: OrderEvent, received: Received) -> str:
        calls.append((received, event))
        return f"[in-order] saw {event.status.value} of order {event.order_id}"

    handlers = {s: record for s in OrderStatus if s is not OrderStatus.CANCELLED}
    runner = ConsumerRunner(topic_settings, unique("in-order"), handlers, name="in-order")
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed + runner.skipped == len(events), timeout=60)

    cancelled = sum(1 for e in events if e.status is OrderStatus.CANCELLED)
    assert (runner.processed, runner.skipped, list(runner.failures)) == (len(events) - cancelled, cancelled, [])
    offsets: dict[int, list[int]] = defaultdict(list)
    versions: dict[str, list[int]] = defaultdict(list)
    for received, event in calls:
        assert received.key == event.order_id and received.topic == topic_settings.topic
        assert received.headers["event-type"] == event.event_type.encode()
        offsets[received.partition].append(received.offset)
        versions[event.order_id].append(event.version)
    assert set(offsets) == {0, 1, 2}
    assert all(used == sorted(used) and len(set(used)) == len(used) for used in offsets.values()), offsets
    assert all(v == sorted(v) for v in versions.values()), versions

    received, event = calls[0]
    block = next(m for m in caplog.messages if "---- in-order received ----" in m)
    assert f"partition {received.partition}, offset {received.offset}" in block
    assert f"key (order id): {event.order_id}" in block and f"status: {event.status.value}" in block
    assert f"[in-order] saw {event.status.value} of order {event.order_id}" in caplog.messages


def test_stop_commits_what_was_processed_and_the_next_runner_starts_right_after_it(
        topic_settings: Settings, unique: Callable[[str], str]) -> None:
    events = plan_lifecycles(10, seed=4, cancel_every=0)
    publish(topic_settings, events)
    group = unique("resume")
    before = consumer_lag(topic_settings, [group])
    assert list(before["committed"]) == [-1, -1, -1] and before["lag"].sum() == len(events)
    with pytest.raises(TimeoutError, match="lag did not reach 0"):
        wait_for_zero_lag(topic_settings, [group], timeout=0.3)

    first_seen: list[str] = []
    gate = threading.Event()

    def held_at_15(event: OrderEvent, received: Received) -> None:
        first_seen.append(str(event.event_id))
        if len(first_seen) == 15:
            gate.wait(30)  # the loop waits here until stop() was asked for

    first = ConsumerRunner(topic_settings, group, every_status(held_at_15), name="first").start()
    assert first.wait_until(lambda: len(first_seen) == 15, timeout=60)
    stop_while_held(first, gate)
    assert first.processed == 15
    assert consumer_lag(topic_settings, [group])["lag"].sum() == len(events) - 15  # stop() committed

    second_seen: list[str] = []
    second = ConsumerRunner(topic_settings, group, every_status(lambda e, r: second_seen.append(str(e.event_id))),
                            name="second")
    with run_groups(second):
        assert second.wait_until(lambda: len(second_seen) >= len(events) - 15, timeout=60)
    assert len(second_seen) == len(events) - 15 and not set(first_seen) & set(second_seen)  # no redelivery
    assert set(first_seen) | set(second_seen) == ids(events)  # no loss
    after = wait_for_zero_lag(topic_settings, [group], timeout=10)
    assert list(after["committed"]) == list(after["end_offset"]) and after["end_offset"].sum() == len(events)


def test_a_failing_handler_and_a_poison_record_land_in_failures_and_the_loop_goes_on(
        topic_settings: Settings, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    good, bad, later = (OrderEvent.created(order_id, "c-1") for order_id in ("good0001", "bad00001", "good0002"))
    with OrderProducer(topic_settings) as producer:  # one partition, so the order is known: offsets 0..3
        producer.publish(good, partition=0)
        producer.publish(bad, partition=0)
        producer.publish_raw(b"definitely not json", key=b"poison01", partition=0)
        producer.publish(later, partition=0)
    handled: list[str] = []

    def payment(event: OrderEvent, received: Received) -> str:
        if event.order_id == bad.order_id:
            raise RuntimeError("payment service is down")
        handled.append(event.order_id)
        return "ok"

    group = unique("failing")
    runner = ConsumerRunner(topic_settings, group, {OrderStatus.CREATED: payment},
                            failure_policy=InPlaceRetry(attempts=2, backoff=0.01))
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed == 4, timeout=60)
    assert handled == [good.order_id, later.order_id]  # the loop went on past both failures
    failures = [(received.offset, type(error)) for received, error in runner.failures]
    assert failures == [(1, RuntimeError), (1, RuntimeError), (2, InvalidEvent)]  # each attempt is kept
    assert runner.dead_lettered == 2
    assert any(r.levelno == logging.ERROR and "offset 1" in r.getMessage() for r in caplog.records)
    assert consumer_lag(topic_settings, [group])["lag"].sum() == 0  # nothing left behind


def test_two_runners_split_the_partitions_and_a_stopped_ones_backlog_moves_to_the_other(
        topic_settings: Settings, unique: Callable[[str], str]) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}
    gate = threading.Event()

    def held_a(event: OrderEvent, received: Received) -> None:
        seen["a"].append(str(event.event_id))
        if len(seen["a"]) == 3:
            gate.wait(30)  # member a stalls with a backlog on its partitions

    group = unique("pair")
    a = ConsumerRunner(topic_settings, group, every_status(held_a), name="member-a")
    b = ConsumerRunner(topic_settings, group, every_status(lambda e, r: seen["b"].append(str(e.event_id))),
                       name="member-b")
    with run_groups(a, b):
        assert a.wait_until(lambda: bool(a.assignment) and bool(b.assignment)
                            and len(a.assignment) + len(b.assignment) == 3, timeout=60), (a.assignment, b.assignment)
        assert not set(a.assignment) & set(b.assignment)
        assert set(a.assignment) | set(b.assignment) == {(topic_settings.topic, p) for p in range(3)}

        events = plan_lifecycles(30, seed=6)
        deliveries = publish(topic_settings, events)
        mine_a = {p for _, p in a.assignment}
        b_share = {str(d.event.event_id) for d in deliveries if d.partition not in mine_a}
        assert b.wait_until(lambda: b_share <= set(seen["b"]), timeout=60)
        # a reaches its third record and is held there (on a loaded machine it may get there after b)
        assert a.wait_until(lambda: len(seen["a"]) == 3, timeout=60), seen["a"]

        stop_while_held(a, gate)
        assert b.wait_until(lambda: len(b.assignment) == 3, timeout=60), b.assignment
        assert b.wait_until(lambda: ids(events) <= set(seen["a"]) | set(seen["b"]), timeout=60)
    assert set(seen["a"]) | set(seen["b"]) == ids(events)  # every event seen at least once
    assert len(seen["a"]) + len(seen["b"]) == len(events)  # and, after a clean stop, only once


def test_run_groups_starts_all_and_stops_all_even_after_an_error(
        topic_settings: Settings, unique: Callable[[str], str]) -> None:
    assigned: dict[int, list[tuple[str, int]]] = defaultdict(list)
    runners = [ConsumerRunner(topic_settings, unique(f"group-{n}"), {}, name=f"runner-{n}",
                              on_assign=lambda partitions, n=n: assigned[n].extend(partitions)) for n in range(2)]
    with pytest.raises(RuntimeError, match="a notebook cell failed"):
        with run_groups(*runners) as started:
            assert started == tuple(runners) and all(r.running for r in runners)
            assert all(r.wait_assigned(timeout=60) for r in runners)
            raise RuntimeError("a notebook cell failed")
    assert not any(r.running for r in runners) and all(r.join(timeout=0) for r in runners)
    everything = [(topic_settings.topic, p) for p in range(3)]
    assert [sorted(assigned[n]) for n in range(2)] == [everything, everything]
