"""A transactional call that stalls is abandoned with its producer, and no event is lost or decided
twice. The stall is real: the broker is frozen (SIGSTOP) just before the call, and thawed
(SIGCONT) later than the stall bound, so the call cannot return in time whatever librdkafka does.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Producer, TopicPartition

from order_system.config import Settings
from order_system.kafka.changelog_reader import read_effects, read_order_state, restore_orders
from order_system.kafka.producer import OrderProducer
from order_system.kafka.reader import read_to_end
from order_system.local.demo import plan_lifecycles
from order_system.kafka import renewal
from order_system.kafka.renewal import GuardedProducer, committed_through, renew
from order_system.kafka.topics import create_topics
from order_system.kafka.transactions import TransactionalRunner
from order_system.domain.changelog import Verdict
from order_system.domain.state_machine import rebuild
from order_system.local.broker import LocalBroker
from order_system.services.processor import OrderProcessor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STALL = 2.0  # the runner's stall bound in these tests
FROZEN = 3.5  # how long the broker stays frozen: past the bound, inside the group's 10 s session


@contextmanager
def frozen_once(broker: LocalBroker, seconds: float) -> Iterator[threading.Event]:
    """An event that, when set by the test, freezes the broker for ``seconds``; thawed on exit too."""
    pid = broker.recorded_pid()
    assert pid is not None
    freeze = threading.Event()

    def freezer() -> None:
        freeze.wait()
        os.kill(pid, signal.SIGSTOP)
        thawing.wait(seconds)
        os.kill(pid, signal.SIGCONT)

    thawing = threading.Event()
    thread = threading.Thread(target=freezer, daemon=True)
    thread.start()
    try:
        yield freeze
    finally:
        freeze.set()
        thawing.set()
        thread.join(timeout=10)
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("call", ["send_offsets_to_transaction", "commit_transaction"])
def test_a_stalled_transactional_call_is_abandoned_and_every_event_decided_once(
        module_spare_broker: LocalBroker, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    settings = Settings(bootstrap_servers=module_spare_broker.bootstrap, topic=f"stall-{call[:6]}", partitions=3)
    create_topics(settings)
    events = plan_lifecycles(40, seed=3)
    processor = OrderProcessor(instance_id=f"stall-{call[:6]}")
    with frozen_once(module_spare_broker, FROZEN) as freeze:
        original = getattr(GuardedProducer, call)

        def freezing(self: GuardedProducer, *args: object) -> None:
            if not freeze.is_set():  # the first transaction's call meets a frozen broker
                freeze.set()
                threading.Event().wait(0.2)  # SIGSTOP is sent by the freezer thread: let it land
            original(self, *args)

        monkeypatch.setattr(GuardedProducer, call, freezing)
        runner = TransactionalRunner(
            settings, f"processor-stall-{call[:6]}", processor.transactional_id,
            lambda records, sleep: processor.process(records, settings, sleep),
            on_assign=lambda parts: processor.restore(restore_orders(settings, [p for _, p in parts])),
            on_revoke=lambda parts: processor.forget(p for _, p in parts), stall_seconds=STALL)
        with runner:
            assert runner.wait_until(lambda: len(runner.assignment) == 3, timeout=60)
            with OrderProducer(settings) as producer:
                for event in events:
                    producer.publish(event)
            assert runner.wait_until(lambda: runner.processed >= len(events), timeout=120), (
                runner.processed, runner.fatal, list(runner.errors))
            assert freeze.is_set() and runner.fatal is None
            assert runner.stalls >= 1 and runner.producers >= 2, (runner.stalls, runner.producers)
    seen = [Verdict.from_json(m.value()) for m in read_to_end(settings, settings.verdicts_topic, timeout=60)]
    assert len(seen) == len(events) == len({(v.partition, v.offset) for v in seen}), "an event decided twice or never"
    expected = {order_id: order.status.value for order_id, order in rebuild(events).orders.items()}
    assert {o: order.status.value for o, order in read_order_state(settings).items()} == expected
    assert not read_effects(settings).duplicated(["event_id", "kind"]).any()


def test_a_slow_registration_is_waited_for_never_raced_by_a_second_producer(
        module_spare_broker: LocalBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        unique) -> None:
    """A cluster that answers no InitProducerId for a while (here frozen, past the stall warning)
    makes the producer's registration slow: ``renew`` waits for that one registration. A second
    producer started meanwhile would be fenced by the first one's late answer (a restart of two of
    three nodes did exactly that: the order-processor stopped, "fenced by a newer instance")."""
    monkeypatch.setattr(renewal, "INIT_WARN_SECONDS", 1.0)
    settings = Settings(bootstrap_servers=module_spare_broker.bootstrap, topic=unique("slow-init"), partitions=1)
    create_topics(settings)
    transactional_id = unique("slow-init")
    before = next(GuardedProducer.serial)  # the number of the last producer made so far
    with frozen_once(module_spare_broker, FROZEN) as freeze:
        freeze.set()
        threading.Event().wait(0.2)  # SIGSTOP is sent by the freezer thread: let it land
        producer = renew(settings, {"transactional.id": transactional_id}, threading.Event().wait, "slow-init")
    try:
        assert producer.number == before + 1, f"{producer.number - before} producers registered"
        assert f"init_transactions of producer {producer.number} has not returned after 1s" in caplog.text
        producer.begin_transaction()  # the one registered producer writes: nothing fenced it
        producer.produce(settings.topic, b"after a slow registration", b"k")
        producer.commit_transaction(30)
    finally:
        producer.close()
    [record] = read_to_end(settings, settings.topic, timeout=30)
    assert record.value() == b"after a slow registration"


def test_committed_offsets_tell_a_committed_transaction_from_an_aborted_one(topic_settings: Settings,
                                                                          unique) -> None:
    """What the runner asks after a stalled commit, on real transactions: offsets past the batch
    mean it committed, offsets before it that it was aborted."""
    from confluent_kafka import Consumer

    group = unique("settle-group")
    consumer = Consumer(topic_settings.client_config(**{"group.id": group, "enable.auto.commit": False,
                                                        "isolation.level": "read_committed"}))
    consumer.subscribe([topic_settings.topic])
    try:
        for _ in range(100):  # the group's generation exists once a partition is assigned
            consumer.poll(0.1)
            if consumer.assignment():
                break
        producer = Producer(topic_settings.producer_config(**{"transactional.id": unique("settle")}))
        producer.init_transactions(30)
        ends = {(topic_settings.topic, 0): 5, (topic_settings.topic, 1): 7}
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        producer.begin_transaction()
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.abort_transaction(30)
        assert committed_through(consumer, ends) is False
        producer.begin_transaction()
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        assert committed_through(consumer, ends) is True
    finally:
        consumer.close()


def test_a_stalled_call_never_keeps_the_process_from_exiting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An abandoned call may never return (librdkafka #5511); its thread must not be joined at exit,
    or a ``serve`` whose processor once stalled could not stop. The call here blocks for good."""
    import subprocess
    import sys
    import time

    script = (
        "import threading\n"
        "from order_system.config import Settings\n"
        "from order_system.kafka.renewal import GuardedProducer, Stalled\n"
        "producer = GuardedProducer(Settings(bootstrap_servers='127.0.0.1:1'), {'transactional.id': 'stuck'}, 0.2)\n"
        "try:\n"
        "    producer._bounded('a call that never returns', threading.Event().wait)\n"
        "except Stalled as stall:\n"
        "    print('stalled:', stall, flush=True)\n"
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "stalled: a call that never returns did not return within 0.2s"
    assert time.monotonic() - began < 20  # the interpreter's start, the client, the stall: never the stuck call
