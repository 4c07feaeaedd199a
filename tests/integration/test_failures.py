"""Retries, dead letters and poison records against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import pytest

from order_system.config import Settings
from order_system.kafka.consumer import ConsumerRunner, Received, run_groups
from order_system.kafka.dead_letters import read_dead_letters, replay
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for
from order_system.kafka.producer import OrderProducer
from order_system.kafka.retry import FailurePolicy, InPlaceRetry, RetryTopics


def publish(settings: Settings, *records: tuple[bytes | None, bytes | None]) -> list:
    with OrderProducer(settings) as producer:
        futures = [producer.publish_raw(value, key=key) for key, value in records]
    return [f.result(timeout=30) for f in futures]


class Flaky:
    """A handler that fails ``failures`` times per order, then succeeds; it notes when each call came."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, list[float]] = {}
        self.succeeded: list[str] = []

    def __call__(self, event: OrderEvent, received: Received) -> str:
        calls = self.calls.setdefault(event.order_id, [])
        calls.append(time.monotonic())
        if len(calls) <= self.failures:
            raise RuntimeError(f"payment service unavailable (call {len(calls)})")
        self.succeeded.append(event.order_id)
        return f"handled {event.order_id}"


STYLES: dict[str, Callable[[], FailurePolicy]] = {
    "in-place": lambda: InPlaceRetry(attempts=3, backoff=0.3, factor=2.0),
    "retry-topics": lambda: RetryTopics(delays=(0.3, 0.6)),
}
MIN_GAPS = {"in-place": (0.3, 0.6), "retry-topics": (0.3, 0.6)}


@pytest.mark.parametrize("style", STYLES)
def test_a_handler_failing_twice_then_succeeding_is_processed_once(topic_settings: Settings, style: str) -> None:
    flaky = Flaky(failures=2)
    event = OrderEvent.created("flaky001", "c-1")
    publish(topic_settings, (event.key(), event.to_json()))
    runner = ConsumerRunner(topic_settings, f"flaky-{style}", {OrderStatus.CREATED: flaky},
                            failure_policy=STYLES[style]())
    with run_groups(runner):
        assert runner.wait_until(lambda: flaky.succeeded == ["flaky001"], timeout=60)
    calls = flaky.calls["flaky001"]
    assert len(calls) == 3 and flaky.succeeded == ["flaky001"]
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(gap >= minimum - 0.01 for gap, minimum in zip(gaps, MIN_GAPS[style])), gaps  # back-off, measured
    assert read_dead_letters(topic_settings).empty


@pytest.mark.parametrize("style", STYLES)
def test_a_handler_that_always_fails_is_dead_lettered_after_exactly_3_attempts(topic_settings: Settings,
                                                                                style: str) -> None:
    always = Flaky(failures=10**6)
    good = OrderEvent.created("good0001", "c-1")
    bad = OrderEvent.created("bad00001", "c-2")
    publish(topic_settings, (bad.key(), bad.to_json()), (good.key(), good.to_json()))
    ok: list[str] = []

    def handler(event: OrderEvent, received: Received) -> str:
        if event.order_id == "bad00001":
            return always(event, received)
        ok.append(event.order_id)
        return "fine"

    runner = ConsumerRunner(topic_settings, f"doomed-{style}", {OrderStatus.CREATED: handler},
                            failure_policy=STYLES[style]())
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.dead_lettered == 1 and ok == ["good0001"], timeout=60)
    assert len(always.calls["bad00001"]) == 3
    dead = read_dead_letters(topic_settings)
    assert len(dead) == 1
    row = dead.iloc[0]
    assert (row["key"], row["attempts"], row["reason"], row["group"]) == ("bad00001", "3", "handler-error",
                                                                          f"doomed-{style}")
    assert (row["original-topic"], row["error-class"]) == (topic_settings.topic, "RuntimeError")
    assert "payment service unavailable (call 3)" in row["error-message"]
    assert row["original-offset"] is not None and row["original-timestamp-ms"] is not None


def test_retry_topics_do_not_hold_up_the_partition(topic_settings: Settings) -> None:
    """While a failed record waits out its back-off, later records of the same partition go on."""
    first = OrderEvent.created("slow0001", "c-1")
    later = [OrderEvent.created("slow0001", "c-1").model_copy(update={"order_id": f"next{n:04d}"}) for n in range(5)]
    order: list[str] = []
    flaky = Flaky(failures=1)

    def handler(event: OrderEvent, received: Received) -> str:
        if event.order_id == "slow0001":
            result = flaky(event, received)
            order.append(event.order_id)
            return result
        order.append(event.order_id)
        return "ok"

    with OrderProducer(topic_settings) as producer:  # all on partition 0, so "later" really is later
        for event in [first, *later]:
            producer.publish_raw(event.to_json(), key=event.key(), partition=0).result(30)
    runner = ConsumerRunner(topic_settings, "no-hold-up", {OrderStatus.CREATED: handler},
                            failure_policy=RetryTopics(delays=(1.0, 1.0)))
    with run_groups(runner):
        assert runner.wait_until(lambda: "slow0001" in order, timeout=60)
    assert order[-1] == "slow0001" and len(order) == 6  # the retried record came last


POISON: list[tuple[str, bytes | None, bytes | None]] = [
    ("not-json", b"p-notjson", b"\x00\x01 this is not json"),
    ("schema", b"p-schema", b'{"orderId": "p-schema", "status": "CREATED"}'),
    ("unknown-status", b"p-status", OrderEvent.created("p-status", "c").to_json().replace(b"CREATED", b"LOST")),
    ("empty", b"p-empty", b""),
    ("missing-key", None, OrderEvent.created("p-nokey", "c").to_json()),
    ("key-mismatch", b"p-other", OrderEvent.created("p-mine", "c").to_json()),
]


def test_poison_records_go_straight_to_the_dead_letter_topic(topic_settings: Settings) -> None:
    processor = OrderProcessor()
    good = [OrderEvent.created("good0002", "c-1"), OrderEvent.paid("good0002", "c-1", 2)]
    invalid = OrderEvent.shipped("good0002", "c-1", 3).model_copy(update={"order_id": "nowhere1"})
    records = [(good[0].key(), good[0].to_json())] + [(key, value) for _, key, value in POISON]
    records += [(invalid.key(), invalid.to_json()), (good[1].key(), good[1].to_json())]
    with OrderProducer(topic_settings) as producer:  # one partition, so the last good record comes after the poison
        for key, value in records:
            producer.publish_raw(value, key=key, partition=0).result(30)

    runner = runner_for(processor, topic_settings)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed >= len(records), timeout=60)
    assert processor.statuses() == {"good0002": OrderStatus.PAID}  # the loop went on past every poison
    dead = read_dead_letters(topic_settings)
    assert sorted(dead["reason"]) == sorted([reason for reason, _, _ in POISON] + ["invalid-transition"])
    assert (dead["attempts"] == "1").all() and (dead["group"] == "order-processor").all()
    by_reason = dead.set_index("reason")
    transition = by_reason.loc["invalid-transition"]
    assert (transition["transition-from"], transition["transition-to"]) == ("(none)", "SHIPPED")
    assert pd.isna(by_reason.loc["missing-key", "key"])
    # customer and time: a missing eventId or version is filled in, as for the Spring tutorial's events
    assert by_reason.loc["schema", "error-message"].count("Field required") == 2
    # the original bytes are kept unchanged
    assert by_reason.loc["not-json", "value"] == (b"\x00\x01 this is not json").decode()


def test_replay_republishes_a_fixed_record(topic_settings: Settings) -> None:
    event = OrderEvent.created("replay01", "c-1")
    calls = Flaky(failures=3)  # fails all 3 in-place attempts, succeeds on the replay
    publish(topic_settings, (event.key(), event.to_json()))
    runner = ConsumerRunner(topic_settings, "replayer", {OrderStatus.CREATED: calls},
                            failure_policy=InPlaceRetry(attempts=3, backoff=0.05))
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.dead_lettered == 1, timeout=60)
        dead = read_dead_letters(topic_settings)
        assert replay(topic_settings, lambda row: row["key"] == "replay01") == 1
        assert runner.wait_until(lambda: calls.succeeded == ["replay01"], timeout=60)
    assert len(dead) == 1


def test_dlt_list_command_shows_a_table(topic_settings: Settings) -> None:
    import os
    import subprocess
    import sys

    publish(topic_settings, (b"cli00001", b"definitely not json"))
    runner = runner_for(OrderProcessor(), topic_settings)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.dead_lettered == 1, timeout=60)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": topic_settings.bootstrap_servers,
           "ORDER_SYSTEM_TOPIC": topic_settings.topic}
    done = subprocess.run([sys.executable, "-m", "order_system", "dlt", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert header.split()[:6] == ["partition", "offset", "key", "group", "reason", "attempts"]
    assert row.split()[2:6] == ["cli00001", "order-processor", "not-json", "1"]
    refused = subprocess.run([sys.executable, "-m", "order_system", "dlt", "replay"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "PARTITION:OFFSET" in refused.stderr
