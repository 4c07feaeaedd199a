"""Poison bytes on the wire, interleaved with good orders, read by the three standard groups.

Every bad record must end in the dead-letter topic once per group that reads ``order-events``
(the order-processor, analytics-service) with its reason, and get a ``rejected`` verdict from
the processor, so the notification-service (which reads the verdicts) never sees it; every good
order must reach its final state, no consumer may die or stall, and every group's lag must go
back to 0.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from order_system.config import Settings
from order_system.kafka.consumer import ConsumerRunner, Received, run_groups
from order_system.domain.changelog import Verdict
from order_system.kafka.dead_letters import read_dead_letters
from order_system.domain.events import MAX_VALUE_BYTES, OrderEvent, OrderStatus
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for, standard_groups
from order_system.kafka.lag import wait_for_zero_lag
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.reader import read_records, read_to_end
from order_system.kafka.retry import RetryTopics
from order_system.domain.state_machine import rebuild

pytestmark = pytest.mark.slow
NEAR_LIMIT = 999_800  # about the largest value (short key, few headers) the producer's 1,000,000-byte limit takes


def with_field(event: OrderEvent, **changes: object) -> bytes:
    """``event``'s JSON with some fields replaced by raw (possibly absurd) values."""
    body = event.to_dict() | changes
    return json.dumps(body).encode()


def poison_set(victim: OrderEvent, rng: random.Random) -> list[tuple[str, bytes | None, bytes | None]]:
    """(expected reason, key, value) for each bad record; keyed by a good order where possible,
    so that the poison shares that order's partition."""
    key = victim.key()
    fresh = OrderEvent.created(victim.order_id, victim.customer_id)
    return [
        ("oversized", key, b"[" * 100_000 + b"]" * 100_000),  # the record: over 64 KiB, not parsed
        ("not-json", key, b"[" * 30_000 + b"]" * 30_000),  # deep nesting within the size limit
        ("not-json", key, b'{"version": ' + b"9" * 5000 + b"}"),  # a 5000-digit number
        ("schema", key, with_field(fresh, version=2**70)),
        ("schema", key, with_field(fresh, version=2**62)),
        ("schema", key, with_field(fresh, version=-1)),
        ("schema", key, with_field(fresh, version="1")),  # wrong type
        ("not-json", key, rng.randbytes(300)),  # random bytes
        ("empty", key, b""),
        ("empty", key, None),  # a tombstone
        ("missing-key", None, fresh.to_json()),  # null key
        ("oversized", key, b" " * 900_000),  # 900 KB, below the broker's 1 MB
        ("oversized", key, b" " * NEAR_LIMIT),  # too large to dead-letter whole once headers are added
        ("unknown-status", key, fresh.to_json().replace(b'"CREATED"', b'"TELEPORTED"')),
        ("not-json", key, b'{"orderId": "\xff\xfe\xfd"}'),  # invalid UTF-8
        ("not-json", key, b'{"description": "\\udc00"}'),  # a lone surrogate
    ]


def test_poison_is_dead_lettered_by_every_group_and_good_orders_finish(topic_settings: Settings) -> None:
    rng = random.Random(2026)
    good = plan_lifecycles(30, seed=2026, cancel_every=4)
    second = {e.order_id: e for e in good if e.version == 2}
    victim = next(iter(second.values()))  # an order whose partition the poison shares
    conflict = OrderEvent.for_status(OrderStatus.CANCELLED, victim.order_id, victim.customer_id, 2,
                                     "a second writer claims v2")
    forged = {"retry-group": b"someone-else", "retry-attempt": b"not a number", "retry-due-ms": b"9" * 30}
    # headers on a bad record that lie about its origin and reason must not reach the dead letter
    lies = [("original-partition", b"7"), ("original-offset", b"123456"), ("dlt-reason", b"nothing to see")]

    sent: list[tuple[str | None, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    poison = poison_set(victim, rng)
    for event in good:
        # forged retry headers on a good record of the main topic must change nothing
        sent.append((None, event.key(), event.to_json(), [*event.headers(), *forged.items()]))
        if event is second[victim.order_id]:
            sent.append(("version-conflict", conflict.key(), conflict.to_json(), conflict.headers()))
        if poison and rng.random() < 0.25:
            reason, key, value = poison.pop()
            sent.append((reason, key, value, lies))
    sent += [(reason, key, value, lies) for reason, key, value in poison]
    with OrderProducer(topic_settings) as producer:
        futures = [producer.publish_raw(value, key=key, headers=headers) for _, key, value, headers in sent]
        deliveries = [future.result(timeout=60) for future in futures]
    bad = {(d.partition, d.offset): reason for (reason, *_), d in zip(sent, deliveries) if reason is not None}
    assert len(bad) == 17

    processor, notifications, analytics = standard_groups()
    groups = (processor, notifications, analytics)
    runners = [runner_for(group, topic_settings) for group in groups]
    with run_groups(*runners):
        wait_for_zero_lag(topic_settings, [g.group_id for g in groups], timeout=90)
        assert all(r.running for r in runners), "a consumer died"
        assert [r.stuck for r in runners] == [0, 0, 0]
        # the processor and analytics read order-events and dead-letter each bad record; notification-service
        # reads the verdicts, where each bad record is a rejected verdict: skipped, never notified
        readers = (runners[0], runners[2])
        assert all(r.wait_until(lambda r=r: r.dead_lettered == len(bad), timeout=30) for r in readers), \
            [r.dead_lettered for r in runners]
        told = runners[1]
        assert told.wait_until(lambda: told.processed + told.skipped == len(good) + len(bad), timeout=30)
        assert (told.processed, told.skipped, told.dead_lettered) == (len(good), len(bad), 0)

    expected = rebuild(good)
    assert not expected.rejected and not expected.duplicates
    assert processor.statuses() == {order_id: o.status for order_id, o in expected.orders.items()}
    histories = {order_id: processor.get(order_id).history for order_id in expected.orders}  # type: ignore[union-attr]
    assert histories == {order_id: o.history for order_id, o in expected.orders.items()}
    assert notifications.count() == len(good) and analytics.events_seen == len(good)

    dead = read_dead_letters(topic_settings, timeout=30)
    found: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    for row in dead.to_dict("records"):
        spot = (int(row["original-partition"]), int(row["original-offset"]))
        assert spot not in found[row["group"]], f"{row['group']} dead-lettered {spot} twice"
        found[row["group"]][spot] = row["reason"]
    assert set(found) == {processor.group_id, analytics.group_id}
    for group in (processor, analytics):
        assert found[group.group_id] == bad, group.group_id
    rejected = {(v.partition, v.offset): v.reason for v in map(Verdict.from_json, (
        m.value() for m in read_to_end(topic_settings, topic_settings.verdicts_topic, timeout=120)))
        if v.reason is not None}
    assert rejected == bad  # the processor's verdicts say the same, in the same transactions
    assert (dead["attempts"] == "1").all() and dead["original-topic"].eq(topic_settings.topic).all()
    assert dead["error-message"].str.len().max() <= 1000

    near = next((d.partition, d.offset) for (_, _, value, _), d in zip(sent, deliveries)
                if value is not None and len(value) == NEAR_LIMIT)
    cut = [m for m in read_records(topic_settings, topic_settings.dead_letter_topic, 30, 1000)
           if dict(m.headers())["dlt-original-offset"] == str(near[1]).encode()
           and dict(m.headers())["dlt-original-partition"] == str(near[0]).encode()]
    assert len(cut) == 2, "the near-limit record was not dead-lettered once per group reading order-events"
    for message in cut:
        headers = dict(message.headers())
        assert headers["dlt-original-value-bytes"] == str(NEAR_LIMIT).encode() and headers["dlt-reason"] == b"oversized"
        assert len(message.value()) == MAX_VALUE_BYTES


class BrokenPolicy(RetryTopics):
    """A failure policy with a bug that shows only for one key (outside any handler)."""

    def accepts(self, runner: ConsumerRunner, received: Received) -> bool:
        if received.key == "boom0001":
            raise ZeroDivisionError("a bug in the policy")
        return super().accepts(runner, received)


class BrokenProcessor(OrderProcessor):
    """An order-processor with a bug that shows only for one order (outside any business step)."""

    def _decide(self, event, partition, offset, pending, sleep):  # type: ignore[no-untyped-def]
        if event.order_id == "boom0001":
            raise ZeroDivisionError("a bug in the processor")
        return super()._decide(event, partition, offset, pending, sleep)


def _publish_boom_then_late(settings: Settings) -> None:
    boom, after = OrderEvent.created("boom0001", "c-1"), OrderEvent.created("late0001", "c-1")
    with OrderProducer(settings) as producer:  # one partition, so "after" really comes after
        for event in (boom, after):
            producer.publish_raw(event.to_json(), key=event.key(), partition=0).result(30)


def test_an_unexpected_error_outside_the_handlers_dead_letters_the_record(topic_settings: Settings) -> None:
    _publish_boom_then_late(topic_settings)
    processor = BrokenProcessor(instance_id="broken")
    runner = runner_for(processor, topic_settings)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed == 2, timeout=60)
        assert runner.running and runner.stuck == 0
    assert processor.statuses() == {"late0001": OrderStatus.CREATED}
    dead = read_dead_letters(topic_settings)
    assert list(dead["reason"]) == ["internal-error"] and list(dead["key"]) == ["boom0001"]
    assert "ZeroDivisionError: a bug in the processor" in dead["error-message"].iloc[0]


def test_an_unexpected_error_in_a_failure_policy_dead_letters_the_record(topic_settings: Settings) -> None:
    _publish_boom_then_late(topic_settings)
    seen: list[str] = []
    runner = ConsumerRunner(topic_settings, "broken-policy",
                            {OrderStatus.CREATED: lambda e, r: seen.append(e.order_id)},
                            failure_policy=BrokenPolicy(delays=(0.1,)))
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed == 2, timeout=60)
        assert runner.running and runner.stuck == 0
    assert seen == ["late0001"]
    dead = read_dead_letters(topic_settings)
    assert list(dead["reason"]) == ["internal-error"] and list(dead["key"]) == ["boom0001"]
    assert "ZeroDivisionError: a bug in the policy" in dead["error-message"].iloc[0]


def test_a_forged_retry_due_time_cannot_hold_a_retry_partition(topic_settings: Settings) -> None:
    """A record on a retry topic claiming to be due in the year 285,000 waits at most the
    longest retry delay, and an unreadable attempt number counts as the last attempt."""
    event = OrderEvent.created("wait0001", "c-1")
    seen: list[str] = []
    group = "forged-retry"
    headers = [("retry-group", group.encode()), ("retry-attempt", b"zwei"), ("retry-due-ms", b"9" * 16)]
    with OrderProducer(topic_settings) as producer:
        producer.publish_raw(event.to_json(), key=event.key(), headers=headers,
                             topic=topic_settings.retry_topics[0]).result(30)
    runner = ConsumerRunner(topic_settings, group, {OrderStatus.CREATED: lambda e, r: seen.append(e.order_id)},
                            failure_policy=RetryTopics(delays=(0.5, 1.0)))
    with run_groups(runner):
        assert runner.wait_until(lambda: seen == ["wait0001"], timeout=30), "the forged due time held the record"
    assert runner.dead_lettered == 0 and runner.stuck == 0
