"""Looking at transactions from outside, on the real broker: end offsets at both isolation levels,
and catching a process mid-transaction (notebook 07 kills the processor that way)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from order_system.config import Settings
from order_system.kafka.compaction import read_log
from order_system.kafka.offsets import end_offsets
from order_system.kafka.topics import admin_client, delete_topics
from order_system.local.tutorial import freeze_mid_transaction, open_transaction


@pytest.fixture
def topic(settings: Settings, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("test-log-inspection")
    admin = admin_client(settings)  # keep a reference: the future dies with the client
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(30)
    read_log(settings, name)  # returns once every partition answers
    yield name
    delete_topics(settings, [name])


def test_end_offsets_show_an_open_transaction_until_it_ends(settings: Settings, topic: str) -> None:
    producer = Producer(settings.producer_config(**{"transactional.id": f"{topic}-writer"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed", partition=0)
    producer.commit_transaction(30)
    assert end_offsets(settings, topic) == {0: (2, 2), 1: (0, 0)}  # the record and its commit marker
    assert not open_transaction(settings, topic)

    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"pending", partition=0)
    producer.flush(30)
    assert end_offsets(settings, topic) == {0: (2, 3), 1: (0, 0)}  # read_committed readers stop at 2
    assert open_transaction(settings, topic)
    producer.abort_transaction(30)
    assert end_offsets(settings, topic) == {0: (4, 4), 1: (0, 0)}
    assert not open_transaction(settings, topic)


def test_freeze_mid_transaction_says_when_it_cannot_catch_one(settings: Settings, topic: str) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait(30)
    with pytest.raises(RuntimeError, match="exited"):
        freeze_mid_transaction(exited, settings, topic, timeout=10)

    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # committed records but never an open transaction: it is frozen and let go until the timeout
        with pytest.raises(TimeoutError, match="no transaction open"):
            freeze_mid_transaction(idle, settings, topic, committed_before=0, timeout=2)
        state = Path(f"/proc/{idle.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert idle.poll() is None and state != "T"  # left running, not frozen (T: stopped)
    finally:
        idle.kill()
        idle.wait(30)
