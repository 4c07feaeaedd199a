"""The order-processor PROCESS killed with SIGKILL mid-stream, restarted with its state dir
deleted: ``order-state`` ends equal to a clean run's, and a read_committed reader sees every
effect and every verdict exactly once.

The process is the real CLI (``order-system consume --group order-processor --instance-id``);
events keep arriving while it runs, so it is killed between or inside transactions, never
after the work is done. The clean run is the same events decided in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from order_system.config import Settings
from order_system.kafka.changelog_reader import read_effects, read_order_state
from order_system.kafka.lag import consumer_lag, wait_for_zero_lag
from order_system.kafka.reader import read_to_end
from order_system.local.demo import plan_lifecycles
from order_system.local.failover import SteadyPublisher
from order_system.domain.changelog import Verdict
from order_system.services.processor import OrderProcessor

pytestmark = pytest.mark.slow


def consume_process(settings: Settings, state_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "ORDER_SYSTEM_TOPIC": settings.topic}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "order-system"), "consume", "--group", "order-processor",
         "--state-dir", str(state_dir), "--instance-id", "crash-test"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def committed(settings: Settings) -> int:
    return int(consumer_lag(settings, ["order-processor"])["committed"].clip(lower=0).sum())


def committed_after_kill(settings: Settings) -> int:
    """The group's committed offsets without waiting for stable ones (read_uncommitted): a process
    killed between ``send_offsets_to_transaction`` and the commit leaves a transaction open that
    holds offsets, and a read_committed client then waits until it is aborted (by the next
    instance, or after transaction.timeout.ms, 60 s). Offsets of that open transaction do not
    count: only committed ones are returned."""
    consumer = Consumer(settings.client_config(**{"group.id": "order-processor", "enable.auto.commit": False,
                                                  "isolation.level": "read_uncommitted"}))
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=30))
    finally:
        consumer.close()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # another process's progress: polling its committed offsets is the only signal


def test_processor_killed_mid_stream_ends_as_if_it_never_crashed(topic_settings: Settings, tmp_path: Path) -> None:
    events = plan_lifecycles(500, seed=99, cancel_every=0)
    assert len(events) == 2000
    reference = OrderProcessor(instance_id="clean-run")  # the same events, decided without a crash
    for event in events:
        reference.handle(event)

    state_dir, log = tmp_path / "state", tmp_path / "consume.log"
    publisher = SteadyPublisher(topic_settings, events, rate=400).start()  # about 5 s of traffic
    first = consume_process(topic_settings, state_dir, log)
    try:
        wait_for(lambda: committed(topic_settings) >= 300, 90, "300 events committed")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    at_kill = committed_after_kill(topic_settings)
    assert at_kill < len(events), f"the kill came too late to test anything ({at_kill} committed)"

    shutil.rmtree(state_dir, ignore_errors=True)  # a replacement machine: nothing on disk
    second = consume_process(topic_settings, state_dir, log)
    try:
        publisher.join(timeout=120)
        assert len(publisher.acked) == len(events)
        wait_for_zero_lag(topic_settings, ["order-processor"], timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]

    state = read_order_state(topic_settings)
    assert {o: order.history for o, order in state.items()} == {o.order_id: o.history for o in reference.orders()}
    effects = read_effects(topic_settings)
    seen = Counter(zip(effects["event_id"], effects["kind"], effects["detail"]))
    assert seen == Counter(zip(*(reference.effects_frame()[c] for c in ("event_id", "kind", "detail"))))
    assert max(seen.values()) == 1  # every side effect exactly once
    verdicts = [Verdict.from_json(m.value())
                for m in read_to_end(topic_settings, topic_settings.verdicts_topic, timeout=120)]
    assert len(verdicts) == len(events) == len({(v.partition, v.offset) for v in verdicts})
    assert {v.outcome.value for v in verdicts} == {"accepted"}  # no half-done batch was taken for a duplicate
    print(f"killed after {at_kill} of {len(events)} events committed")
