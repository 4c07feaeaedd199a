"""A consumer process killed with SIGKILL mid-stream, then restarted: it ends as if it never crashed.

The process is the real CLI (``order-system consume --group order-processor --state-dir``);
the reference is the same events handled in this process without a crash.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from order_system.config import Settings
from order_system.services.groups import OrderProcessor
from order_system.kafka.lag import consumer_lag, wait_for_zero_lag
from order_system.kafka.producer import OrderProducer, plan_lifecycles
from order_system.state.store import OrderStore

pytestmark = pytest.mark.slow


def consume_process(settings: Settings, state_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "ORDER_SYSTEM_TOPIC": settings.topic}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "order-system"), "consume", "--group", "order-processor",
         "--state-dir", str(state_dir)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def recorded(db: Path) -> int:
    """How many events the processor has recorded so far (read straight from its SQLite file)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM history").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # another process's progress: polling its file is the only signal


def test_processor_killed_mid_stream_ends_as_if_it_never_crashed(topic_settings: Settings, tmp_path: Path) -> None:
    events = plan_lifecycles(500, seed=99, cancel_every=0)
    assert len(events) == 2000
    with OrderProducer(topic_settings) as producer:
        for event in events:
            producer.publish(event)

    reference = OrderProcessor()  # the same events, handled without a crash
    for event in events:
        reference.handle(event)

    db = tmp_path / "order-processor.db"
    log = tmp_path / "consume.log"
    first = consume_process(topic_settings, tmp_path, log)
    try:
        wait_for(lambda: recorded(db) >= 500, 90, "500 events recorded")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    at_kill = recorded(db)
    committed_at_kill = int(consumer_lag(topic_settings, ["order-processor"])["committed"].clip(lower=0).sum())
    assert 500 <= at_kill < 2000, f"the kill came too late to test anything ({at_kill} recorded)"

    second = consume_process(topic_settings, tmp_path, log)
    try:
        wait_for_zero_lag(topic_settings, ["order-processor"], timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]

    store = OrderStore(db)
    assert store.statuses() == reference.statuses()
    assert {o: store.get(o).history for o in store.statuses()} == {  # type: ignore[union-attr]
        o: reference.get(o).history for o in reference.statuses()}  # type: ignore[union-attr]
    effects = Counter((e["event_id"], e["kind"], e["detail"]) for e in store.effects())
    assert effects == Counter((e["event_id"], e["kind"], e["detail"]) for e in reference.store.effects())
    assert max(effects.values()) == 1  # every side effect exactly once
    assert recorded(db) == len(events)
    redelivered = log.read_text().count("; skipped")
    print(f"killed after {at_kill} of {len(events)} recorded; {committed_at_kill} committed; "
          f"{redelivered} redelivered and skipped as duplicates")
    assert redelivered == at_kill - committed_at_kill, (at_kill, committed_at_kill, redelivered)
    assert "offsets committed" in log.read_text()
