"""The exactly-once order-processor against the real broker: state restored from ``order-state``
on assignment, one verdict per input record, each effect once, and zombie fencing."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from order_system.config import Settings
from order_system.domain.changelog import Verdict, order_to_json
from order_system.domain.errors import TopicError
from order_system.domain.events import OrderEvent
from order_system.domain.state_machine import rebuild
from order_system.kafka.changelog_reader import read_effects, read_order_state, restore_orders
from order_system.kafka.consumer import run_groups
from order_system.kafka.lag import wait_for_zero_lag
from order_system.kafka.producer import OrderProducer
from order_system.kafka.reader import read_to_end
from order_system.local.demo import plan_lifecycles
from order_system.kafka.topics import create_topics, delete_topics
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for


def publish(settings: Settings, events: list[OrderEvent]) -> None:
    with OrderProducer(settings) as producer:
        futures = [producer.publish(event) for event in events]
    for future in futures:
        future.result(timeout=30)


def verdicts(settings: Settings, isolation: str = "read_committed") -> list[Verdict]:
    if isolation == "read_committed":
        return [Verdict.from_json(m.value()) for m in read_to_end(settings, settings.verdicts_topic, timeout=60)]
    consumer = Consumer(settings.client_config(**{  # what a reader that ignores transactions sees
        "group.id": "uncommitted-reader", "isolation.level": "read_uncommitted", "enable.partition.eof": True,
        "enable.auto.commit": False}))
    consumer.assign([TopicPartition(settings.verdicts_topic, p, 0) for p in range(settings.partitions)])
    found, ends = [], set()
    while len(ends) < settings.partitions:
        for message in consumer.consume(500, 1.0):
            if message.error() is None:
                found.append(Verdict.from_json(message.value()))
            elif message.error().code() == KafkaError._PARTITION_EOF:
                ends.add(message.partition())
    consumer.close()
    return found


def expected_states(events: list[OrderEvent]) -> dict[str, str]:
    return {order_id: order.status.value for order_id, order in rebuild(events).orders.items()}


def test_a_new_instance_restores_state_from_the_changelog_and_goes_on(topic_settings: Settings) -> None:
    events = plan_lifecycles(60, seed=5, interleave=False)
    firsts = [e for e in events if e.version <= 2]
    rest = [e for e in events if e.version > 2]
    publish(topic_settings, firsts)
    first = OrderProcessor(instance_id="restore-a")
    with run_groups(runner_for(first, topic_settings)) as (runner,):
        assert runner.wait_until(lambda: runner.processed >= len(firsts), timeout=60)
    assert {o: s.value for o, s in first.statuses().items()} == expected_states(firsts)

    publish(topic_settings, rest + firsts[:5])  # five redelivered old events too
    second = OrderProcessor(instance_id="restore-b")  # another machine: it knows nothing but Kafka
    with run_groups(runner_for(second, topic_settings)) as (runner,):
        assert runner.wait_until(lambda: runner.processed >= len(rest) + 5, timeout=60)
        assert runner.dead_lettered == 0  # PAID after CREATED from the restored state, not invalid
    assert {o: s.value for o, s in second.statuses().items()} == expected_states(events)
    assert second.duplicates == 5

    state = read_order_state(topic_settings)
    assert {o: order.status.value for o, order in state.items()} == expected_states(events)
    assert all(order.history == rebuild(events).orders[o].history for o, order in state.items())
    effects = read_effects(topic_settings)
    assert not effects.duplicated(["event_id", "kind"]).any()
    assert (effects["kind"] == "inventory-reserved").sum() == 60
    seen = verdicts(topic_settings)
    assert len(seen) == len(events) + 5 and Counter(v.outcome.value for v in seen)["duplicate"] == 5
    assert len({(v.partition, v.offset) for v in seen}) == len(seen)  # one verdict per input record


def test_a_second_instance_with_the_same_id_fences_the_first(topic_settings: Settings) -> None:
    """Zombie fencing: the older instance's later writes never become visible."""
    zombie = OrderProcessor(instance_id="twin")
    older = runner_for(zombie, topic_settings, name="older").start()
    newer = None
    try:
        assert older.wait_until(lambda: len(older.assignment) == 3, timeout=60)
        newer = runner_for(OrderProcessor(instance_id="twin"), topic_settings, name="newer").start()
        # the newer one fenced the older on start; once both hold partitions, events arrive for both
        assert newer.wait_until(lambda: bool(newer.assignment) and len(older.assignment) < 3, timeout=60)
        events = plan_lifecycles(30, seed=8)
        publish(topic_settings, events)
        assert older.join(timeout=60), "the fenced instance did not stop"
        assert older.fatal is not None and "'order-processor-twin'" in older.fatal and "instance id" in older.fatal
        assert older.processed == 0  # it committed nothing after it was fenced
        assert newer.wait_until(lambda: newer.processed >= len(events), timeout=90)
        assert newer.running and newer.fatal is None
    finally:
        older.stop()
        if newer is not None:
            newer.stop()
    seen = verdicts(topic_settings)
    assert sorted((v.partition, v.offset) for v in seen) == sorted({(v.partition, v.offset) for v in seen})
    assert len(seen) == len(events)
    assert {o: order.status.value for o, order in read_order_state(topic_settings).items()} == expected_states(events)
    assert not read_effects(topic_settings).duplicated(["event_id", "kind"]).any()


def test_topics_refuse_a_state_topic_with_another_partition_count(settings: Settings, unique) -> None:
    fresh = settings.with_topic(unique("copart-events"))
    try:
        from confluent_kafka.admin import NewTopic

        from order_system.kafka.topics import admin_client

        admin = admin_client(fresh)
        admin.create_topics([NewTopic(fresh.state_topic, 4, 1)])[fresh.state_topic].result(30)
        with pytest.raises(TopicError, match=r"'copart-events-\w+-state' has 4 partitions but .* has 3"):
            create_topics(fresh)
    finally:
        delete_topics(fresh, list(fresh.all_topics))


def test_lag_reaches_zero_through_transactional_offset_commits(topic_settings: Settings) -> None:
    events = plan_lifecycles(20, seed=9)
    publish(topic_settings, events)
    processor = OrderProcessor(instance_id="lag")
    with run_groups(runner_for(processor, topic_settings)) as (runner,):
        lag = wait_for_zero_lag(topic_settings, [processor.group_id], timeout=60)
        assert runner.transactions >= 1
    assert lag["lag"].sum() == 0 and lag["end_offset"].sum() == len(events)


def test_two_instances_split_the_partitions_and_one_takes_over_the_others_state(topic_settings: Settings) -> None:
    events = plan_lifecycles(40, seed=12, interleave=False)
    firsts = [e for e in events if e.version == 1]
    rest = [e for e in events if e.version > 1]
    a, b = OrderProcessor(instance_id="split-a"), OrderProcessor(instance_id="split-b")
    first, second = runner_for(a, topic_settings, name="a"), runner_for(b, topic_settings, name="b")
    with run_groups(first, second):
        assert first.wait_until(lambda: len(first.assignment) + len(second.assignment) == 3
                                and bool(first.assignment) and bool(second.assignment), timeout=60)
        publish(topic_settings, firsts)
        assert first.wait_until(lambda: first.processed + second.processed >= len(firsts), timeout=60)
        assert a.count() and b.count() and a.count() + b.count() == len(firsts)  # each holds its partitions only
        first.stop()  # b takes a's partitions over, restoring their orders from order-state
        assert second.wait_until(lambda: len(second.assignment) == 3, timeout=60)
        before = second.processed
        publish(topic_settings, rest)
        assert second.wait_until(lambda: second.processed >= before + len(rest), timeout=60)
        assert second.dead_lettered == 0
    assert {o: s.value for o, s in b.statuses().items()} == expected_states(events)
    assert not read_effects(topic_settings).duplicated(["event_id", "kind"]).any()



def test_without_its_state_topic_the_processor_stops_and_says_what_to_do(settings: Settings, unique,
                                                                        monkeypatch) -> None:
    from confluent_kafka.admin import NewTopic

    from order_system.kafka import assignment
    from order_system.kafka.topics import admin_client

    monkeypatch.setattr(assignment, "PREPARE_ATTEMPTS", 1)
    own = settings.with_topic(unique("stateless-events"))  # created the old way: no order-state
    admin = admin_client(own)
    admin.create_topics([NewTopic(own.topic, 3, 1)])[own.topic].result(30)
    try:
        runner = runner_for(OrderProcessor(instance_id="stateless"), own).start()
        assert runner.join(timeout=60), "the processor went on without its state"
        assert runner.fatal is not None and f"'{own.state_topic}' does not exist" in runner.fatal
        assert "order-system topics create" in runner.fatal and runner.processed == 0
    finally:
        delete_topics(own, list(own.all_topics))


def test_a_restore_waits_for_a_transaction_still_open_on_the_changelog(topic_settings: Settings,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The previous owner's last transaction can be committed with its state records not readable
    yet (the markers reach each partition after ``commit_transaction`` returned). A restore that
    stopped at the last stable offset would miss them, so it waits for transactions open below
    the high watermark to be decided; one still open after the settle time is said in the log."""
    order = rebuild(plan_lifecycles(1, seed=9, interleave=False)[:1]).orders
    (order_id, state), = order.items()
    partition = 0
    producer = Producer(topic_settings.producer_config(**{"transactional.id": f"restore-open-{order_id}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic_settings.state_topic, key=order_id.encode(), value=order_to_json(state), partition=partition)
    assert producer.flush(30) == 0  # written and acknowledged, not committed

    with caplog.at_level(logging.WARNING, logger="order_system.kafka.reader"):
        restored = restore_orders(topic_settings, [partition], timeout=3)  # settles for at most 3 s
    assert order_id not in restored[partition]  # not committed: not state
    assert any("still open" in r.getMessage() and topic_settings.state_topic in r.getMessage()
               for r in caplog.records), caplog.text

    committing = threading.Timer(1.0, producer.commit_transaction, args=(30,))
    committing.start()  # decided while the next restore waits: it must include the record
    try:
        restored = restore_orders(topic_settings, [partition], timeout=30)
    finally:
        committing.join()
    assert restored[partition][order_id].version == state.version


def test_a_batch_held_past_the_poll_interval_is_aborted_and_decided_again_once(topic_settings: Settings,
                                                                             unique) -> None:
    """A real lost assignment: the first batch is held past ``max.poll.interval.ms`` until the
    broker has dropped the member, so its offsets belong to an old generation. That transaction fails
    and is aborted, the partitions come back (restored from the changelog), and the same producer
    goes on: no call stalled, so none was renewed. Every event is still decided exactly once."""
    from confluent_kafka.admin import AdminClient

    from order_system.kafka.transactions import TransactionalRunner

    events = plan_lifecycles(20, seed=11)
    group, processor = unique("held-group"), OrderProcessor(instance_id=unique("held"))
    admin = AdminClient(topic_settings.client_config())
    held = threading.Event()

    def members() -> int:
        return len(admin.describe_consumer_groups([group])[group].result(10).members)

    def process(records, sleep):  # type: ignore[no-untyped-def]
        if not held.is_set():
            held.set()
            deadline = time.monotonic() + 60
            while members() and time.monotonic() < deadline:
                sleep(0.5)  # the member leaving has no event to wait on
        return processor.process(records, topic_settings, sleep)

    def on_assign(partitions: list[tuple[str, int]]) -> None:
        processor.restore(restore_orders(topic_settings, [p for _, p in partitions]))

    runner = TransactionalRunner(topic_settings, group, f"{group}-tx", process, on_assign=on_assign,
                                 on_revoke=lambda ps: processor.forget(p for _, p in ps),
                                 # the least poll interval above a (short) session timeout
                                 extra_config={"session.timeout.ms": 6000, "max.poll.interval.ms": 7000})
    with runner:
        assert runner.wait_until(lambda: len(runner.assignment) == 3, timeout=60)
        publish(topic_settings, events)
        assert runner.wait_until(lambda: runner.processed >= len(events), timeout=120), runner.errors
        assert held.is_set() and runner.fatal is None
        assert runner.stuck >= 1 and (runner.stalls, runner.producers) == (0, 1), (
            runner.stuck, runner.stalls, runner.producers, list(runner.errors))
    seen = verdicts(topic_settings)
    assert len(seen) == len(events) == len({(v.partition, v.offset) for v in seen})
    assert {o: order.status.value for o, order in read_order_state(topic_settings).items()} == expected_states(events)
    assert not read_effects(topic_settings).duplicated(["event_id", "kind"]).any()
