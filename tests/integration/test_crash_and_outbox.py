"""The outbox keeps what the broker did not take and resends it (the consumer SIGKILL test is in tests/faults)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from order_system.broker import LocalBroker
from order_system.config import Settings
from order_system.reader import read_records
from order_system.errors import PublishError
from order_system.events import OrderEvent
from order_system.outbox import Outbox, OutboxRelay
from order_system.producer import OrderProducer, plan_lifecycles
from order_system.topics import create_topics


def test_undelivered_events_wait_in_the_outbox_and_are_resent_once_in_order(
    settings: Settings, spare_broker: LocalBroker, tmp_path: Path
) -> None:
    spare_broker.start(timeout=90)
    own = Settings(bootstrap_servers=spare_broker.bootstrap, topic="outbox-orders", partitions=3)
    create_topics(own)
    outbox = Outbox(tmp_path / "outbox.db")
    events = plan_lifecycles(5, seed=8, interleave=True, cancel_every=0)
    before, during = events[:6], events[6:]

    with OrderProducer(own, outbox=outbox, extra_config={"delivery.timeout.ms": 3000}) as producer:
        for event in before:
            producer.publish(event).result(timeout=30)
        spare_broker.stop()
        futures = [producer.publish(event) for event in during]
        for future in futures:
            with pytest.raises(PublishError, match="kept in the outbox"):
                future.result(timeout=30)
    kept = [OrderEvent.from_json(k.value) for k in outbox.pending()]
    assert sorted(e.event_id for e in kept) == sorted(e.event_id for e in during)
    for order_id in {e.order_id for e in during}:  # kept in each order's own order
        versions = [e.version for e in kept if e.order_id == order_id]
        assert versions == sorted(versions), f"order {order_id} kept out of order: {versions}"

    spare_broker.start(timeout=90)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": own.bootstrap_servers, "ORDER_SYSTEM_TOPIC": own.topic}
    command = [sys.executable, "-m", "order_system", "outbox", "resend", "--path", str(outbox.path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"resent {len(during)} record(s), in order; 0 left" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "nothing to resend" in again.stdout

    on_topic = [OrderEvent.from_json(m.value()) for m in read_records(own, own.topic, 30, 1000)]
    assert Counter(e.event_id for e in on_topic) == Counter(e.event_id for e in events)  # each exactly once
    for order_id in {e.order_id for e in events}:
        versions = [e.version for e in on_topic if e.order_id == order_id]  # read_records sorts by offset
        assert versions == sorted(versions), f"order {order_id} out of order: {versions}"


def test_the_relay_resends_kept_events_by_itself_once_the_broker_answers(
    topic_settings: Settings, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    events = plan_lifecycles(2, seed=12, cancel_every=0)
    for event in events:
        outbox.keep(topic_settings.topic, event.key(), event.to_json(), event.headers(), "broker away (simulated)")
    broker_back = threading.Event()
    with OrderProducer(topic_settings) as producer:
        relay = OutboxRelay(
            outbox, send=producer.publish_kept, reachable=broker_back.is_set, interval=0.05,
        ).start()
        try:
            assert not relay._stop.wait(0.3) and len(outbox) == len(events)  # broker "away": nothing sent
            broker_back.set()
            deadline = time.monotonic() + 30
            while len(outbox):
                assert time.monotonic() < deadline, "the relay did not resend"
                time.sleep(0.05)  # the relay works in its own thread
        finally:
            relay.stop()
    on_topic = [OrderEvent.from_json(m.value()) for m in read_records(topic_settings, topic_settings.topic, 30, 100)]
    assert sorted(e.event_id for e in on_topic) == sorted(e.event_id for e in events)
    assert relay.resent == len(events)
