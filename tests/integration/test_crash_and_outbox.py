"""The outbox keeps what the broker did not take and resends it (the consumer SIGKILL test is in tests/faults)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from order_system.local.broker import LocalBroker
from order_system.config import Settings
from order_system.kafka.reader import read_records
from order_system.domain.errors import PublishError
from order_system.domain.events import OrderEvent
from order_system.state.outbox import Outbox, OutboxRelay
from order_system.kafka.ordering import OrderedProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.topics import create_topics


def cluster_of(settings: Settings) -> str:
    """The id of the cluster the settings point at (what the outbox tags its rows with)."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(settings.client_config()).list_topics(timeout=10).cluster_id


def test_undelivered_events_wait_in_the_outbox_and_are_resent_once_in_order(
    settings: Settings, spare_broker: LocalBroker, tmp_path: Path
) -> None:
    spare_broker.start(timeout=90)
    own = Settings(bootstrap_servers=spare_broker.bootstrap, topic="outbox-orders", partitions=3)
    create_topics(own)
    outbox = Outbox(tmp_path / "outbox.db")
    events = plan_lifecycles(5, seed=8, interleave=True, cancel_every=0)
    before, during = events[:6], events[6:]

    with OrderedProducer(own, outbox, extra_config={"delivery.timeout.ms": 3000}) as producer:
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
    cluster = cluster_of(topic_settings)
    assert cluster
    outbox = Outbox(tmp_path / "outbox.db")
    events = plan_lifecycles(2, seed=12, cancel_every=0)
    for event in events:
        outbox.keep(topic_settings.topic, event.key(), event.to_json(), event.headers(), "broker away (simulated)",
                    cluster=cluster)
    broker_back = threading.Event()
    with OrderedProducer(topic_settings, outbox) as producer:
        assert producer.holds(events[0].order_id)  # kept events of the order: new ones would queue behind
        relay = OutboxRelay(producer, reachable=broker_back.is_set, interval=0.05).start()
        try:
            assert not relay._stop.wait(0.3) and len(outbox) == len(events)  # broker "away": nothing sent
            broker_back.set()
            deadline = time.monotonic() + 30
            while len(outbox):
                assert time.monotonic() < deadline, "the relay did not resend"
                time.sleep(0.05)  # the relay works in its own thread
        finally:
            relay.stop()
        assert not producer.holds(events[0].order_id)  # nothing remembered once delivered
    on_topic = [OrderEvent.from_json(m.value()) for m in read_records(topic_settings, topic_settings.topic, 30, 100)]
    assert [e.event_id for e in on_topic if e.order_id == events[0].order_id] == \
        [e.event_id for e in events if e.order_id == events[0].order_id]
    assert sorted(e.event_id for e in on_topic) == sorted(e.event_id for e in events)
    assert relay.resent == len(events)


def test_after_a_failure_later_events_of_the_order_queue_behind_it_and_are_resent_first(
    topic_settings: Settings, unique, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A record that fails is kept; the next of its order goes straight behind it, others flow."""
    missing = unique("not-yet-created")  # auto-create is off: delivery fails until it exists
    a1, a2 = plan_lifecycles(1, seed=31, cancel_every=0)[:2]
    [b1] = plan_lifecycles(1, seed=32, cancel_every=0)[:1]
    outbox = Outbox(tmp_path / "outbox.db")
    with OrderedProducer(topic_settings, outbox, extra_config={"delivery.timeout.ms": 1500}) as producer:
        cluster = producer.cluster_id()
        with pytest.raises(PublishError, match="kept in the outbox"):
            producer.publish(a1, topic=missing).result(timeout=30)
        assert producer.holds(a1.order_id, topic=missing)
        queued = producer.publish(a2, topic=missing)
        assert queued.done(), "a later event of a kept order must not be sent ahead of it"
        with pytest.raises(PublishError, match="waits in the outbox; kept in the outbox"):
            queued.result(timeout=0)
        assert producer.publish(b1).result(timeout=30).offset >= 0  # other orders are not held up
        assert [(k.topic, k.cluster) for k in outbox.pending()] == [(missing, cluster)] * 2

        create_topics(topic_settings.with_topic(missing))
        report = producer.resend_kept()
        assert (report.sent, report.left, report.cluster) == (2, 0, cluster)
        assert not producer.holds(a1.order_id, topic=missing) and producer.remembered_keys == 0
    on_topic = [OrderEvent.from_json(m.value()) for m in read_records(topic_settings, missing, 30, 100)]
    assert [e.event_id for e in on_topic] == [a1.event_id, a2.event_id]


def test_an_old_outbox_file_opens_and_only_this_clusters_rows_are_resent(
    topic_settings: Settings, tmp_path: Path
) -> None:
    events = plan_lifecycles(3, seed=41, cancel_every=0)
    mine, theirs, old = events[:4], events[4:8], events[8:]
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as conn:  # the schema before cluster ids
        conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key BLOB, "
                     "value BLOB, headers TEXT NOT NULL, error TEXT NOT NULL, kept_at REAL NOT NULL)")
        conn.executemany("INSERT INTO outbox (topic, key, value, headers, error, kept_at) VALUES (?, ?, ?, '[]', ?, 0)",
                         [(topic_settings.topic, e.key(), e.to_json(), "old") for e in old])
    cluster = cluster_of(topic_settings)
    outbox = Outbox(path)
    assert [k.cluster for k in outbox.pending()] == [None] * len(old)
    for event in mine:
        outbox.keep(topic_settings.topic, event.key(), event.to_json(), event.headers(), "away", cluster=cluster)
    for event in theirs:
        outbox.keep(topic_settings.topic, event.key(), event.to_json(), event.headers(), "away", cluster="another-one")

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": topic_settings.bootstrap_servers}
    command = [sys.executable, "-m", "order_system", "outbox", "resend", "--path", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (f"resent {len(mine)} record(s), in order; 0 left for cluster {cluster}; {len(theirs)} record(s) "
            f"belong to other clusters (not sent here); {len(old)} record(s) of an unknown cluster") in done.stdout
    adopted = subprocess.run([*command, "--adopt"], env=env, capture_output=True, text=True, timeout=120)
    assert f"resent {len(old)} record(s), in order; 0 left" in adopted.stdout, adopted.stdout + adopted.stderr

    on_topic = [OrderEvent.from_json(m.value()).event_id for m in read_records(topic_settings, topic_settings.topic)]
    assert sorted(on_topic) == sorted(e.event_id for e in mine + old)  # never the other cluster's
    assert [k.cluster for k in Outbox(path).pending()] == ["another-one"] * len(theirs)


def test_no_new_version_is_given_out_while_an_event_of_the_order_is_kept(tmp_path: Path, free_port: int) -> None:
    from order_system.services.commands import OrderCommands
    from order_system.domain.errors import StillProcessing
    from order_system.state.view import OrderView
    from order_system.domain.events import OrderStatus

    nowhere = Settings(bootstrap_servers=f"127.0.0.1:{free_port}", topic="unreachable")
    outbox = Outbox(tmp_path / "outbox.db")
    config = {"delivery.timeout.ms": 1000, "socket.connection.setup.timeout.ms": 1000}
    with OrderedProducer(nowhere, outbox, extra_config=config) as producer:
        commands = OrderCommands(producer, OrderView(nowhere), publish_timeout=10, view_timeout=0.2)  # never started
        with pytest.raises(PublishError, match="kept in the outbox") as failed:
            commands.create("carol")
        order_id = failed.value.order_id
        assert order_id and producer.holds(order_id)
        with pytest.raises(StillProcessing):  # not "unknown order", and no version 2 on top of a kept v1
            commands.advance(order_id, "carol", OrderStatus.PAID)
        producer.flush(0)
    [kept] = outbox.pending()
    assert kept.cluster is None  # no broker ever answered: its cluster is unknown (resent only with --adopt)
    assert OrderEvent.from_json(kept.value).order_id == order_id


def test_a_kept_row_that_cannot_be_sent_holds_back_the_rest_of_its_order_only(
    topic_settings: Settings, tmp_path: Path
) -> None:
    cluster = cluster_of(topic_settings)
    a1, a2 = plan_lifecycles(1, seed=51, cancel_every=0)[:2]
    [b1] = plan_lifecycles(1, seed=52, cancel_every=0)[:1]
    outbox = Outbox(tmp_path / "outbox.db")
    too_big = b"x" * 2_000_000  # over message.max.bytes: librdkafka refuses it at once, every time
    outbox.keep(topic_settings.topic, a1.key(), too_big, None, "away", cluster=cluster)
    for event in (b1, a2):
        outbox.keep(topic_settings.topic, event.key(), event.to_json(), event.headers(), "away", cluster=cluster)
    with OrderedProducer(topic_settings, outbox) as producer:
        report = producer.resend_kept()
        assert (report.sent, report.left) == (1, 2)  # b1 went out; a2 stays behind the refused a1
        assert producer.holds(a1.order_id) and not producer.holds(b1.order_id)
    on_topic = [OrderEvent.from_json(m.value()) for m in read_records(topic_settings, topic_settings.topic, 30, 100)]
    assert [e.event_id for e in on_topic] == [b1.event_id]
    assert [k.key for k in outbox.pending()] == [a1.key(), a2.key()]
