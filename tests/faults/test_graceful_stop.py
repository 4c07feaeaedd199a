"""SIGTERM of `order-system serve` / `consume` under load: exit 0 quickly, nothing finished comes again.

The proof that nothing finished is reprocessed after a restart has two halves:

* right after the stop, every record a group finished (its effect is in the group's SQLite
  store; for the order-processor: its verdict is committed in ``order-verdicts``) lies below
  the offset the group committed, and every record below it is finished;
* the restarted process receives no record below those committed offsets and logs no
  duplicate; the order-processor commits exactly one verdict per record, none a duplicate.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from order_system.config import Settings
from order_system.domain.changelog import Outcome, Verdict
from order_system.kafka.changelog_reader import read_order_state
from order_system.kafka.lag import consumer_lag, wait_for_zero_lag
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.reader import read_records, read_to_end

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GROUPS = ("order-processor", "notification-service", "analytics-service")
STOP_WITHIN = 10.0
RECEIVED = re.compile(r"---- (\S+) received ----\n  topic (\S+), partition (\d+), offset (\d+)")


def launch(args: list[str], own: Settings, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": own.topic, "ORDER_SYSTEM_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "order_system", *args], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def terminate(process: subprocess.Popen[bytes], log: Path, signum: int = signal.SIGTERM) -> float:
    """SIGTERM (or ``signum``); returns the seconds until exit, asserting exit code 0."""
    began = time.monotonic()
    process.send_signal(signum)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"no exit 60 s after SIGTERM\n{log.read_text()[-3000:]}") from None
    took = time.monotonic() - began
    assert code == 0, f"exit code {code}\n{log.read_text()[-3000:]}"
    return took


def wait_for(predicate, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the process ended while waiting for {what}\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log.read_text()[-3000:]}"
        time.sleep(0.1)  # the other process offers nothing to wait on but its files and port


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def committed(own: Settings, groups: tuple[str, ...]) -> dict[tuple[str, int], int]:
    frame = consumer_lag(own, groups)
    return {(row.group, row.partition): max(row.committed, 0) for row in frame.itertuples()}


def rows(path: Path, sql: str) -> set[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return set(db.execute(sql).fetchall())


def verdicts(own: Settings) -> Counter[tuple[int, int]]:
    """(partition, offset) of each input record -> how many committed verdicts the processor wrote
    for it (a read_committed reader's view: what an aborted or open transaction wrote is not there)."""
    found: Counter[tuple[int, int]] = Counter()
    for message in read_to_end(own, own.verdicts_topic, timeout=60):
        verdict = Verdict.from_json(message.value())
        assert verdict.outcome is not Outcome.DUPLICATE, verdict  # a record processed again would be one
        found[(verdict.partition, verdict.offset)] += 1
    return found


def finished_records(own: Settings, state: Path) -> dict[str, dict[tuple[int, int], bool]]:
    """Per group with a store: (partition, offset) of each record on the topic -> finished?"""
    processed = verdicts(own)
    notified = {r[0] for r in rows(state / "notification-service.db", "SELECT event_id FROM effects")}
    found: dict[str, dict[tuple[int, int], bool]] = {"order-processor": {}, "notification-service": {}}
    for message in read_records(own, own.topic, timeout=30):
        where = (message.partition(), message.offset())
        found["order-processor"][where] = where in processed
    for message in read_to_end(own, own.verdicts_topic, timeout=60):  # notification-service reads these
        verdict = Verdict.from_json(message.value())
        if verdict.outcome is Outcome.ACCEPTED:  # the others are skipped and leave no trace to check
            found["notification-service"][(message.partition(), message.offset())] = verdict.event_id in notified
    return found


def assert_finished_is_committed(own: Settings, state: Path, done: dict[tuple[str, int], int]) -> int:
    """Finished <=> below the committed offset, per group and partition; returns how many finished."""
    total = 0
    for group, records in finished_records(own, state).items():
        for (partition, offset), finished in records.items():
            below = offset < done[(group, partition)]
            assert finished == below, (group, partition, offset, finished, done[(group, partition)])
            total += finished
    return total


def assert_nothing_received_twice(log_text: str, own: Settings, done: dict[tuple[str, int], int]) -> int:
    """The restarted process received only records at or above the committed offsets."""
    seen = 0
    for group, topic, partition, offset in RECEIVED.findall(log_text):
        if topic == own.input_topic(group):  # the committed offsets are on the topic each group reads
            assert int(offset) >= done[(group, int(partition))], (group, partition, offset)
            seen += 1
    assert "duplicate of" not in log_text and "already notified" not in log_text and "already counted" not in log_text
    return seen


def test_sigterm_of_serve_under_load(topic_settings: Settings, tmp_path: Path, free_port: int) -> None:
    state, first_log, second_log = tmp_path / "state", tmp_path / "serve-1.log", tmp_path / "serve-2.log"
    args = ["serve", "--port", str(free_port), "--state-dir", str(state), "--log-records", "block"]
    accepted: list[tuple[str, str]] = []  # (order id, status) of every 2xx answer
    answers: dict[int, int] = defaultdict(int)
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{free_port}", timeout=30) as client:
            for n in range(400):  # bounded; in practice it ends when the server stops listening
                customer = f"load-{n % 5}"
                try:
                    created = client.post("/api/orders", json={"customerId": customer})
                    answers[created.status_code] += 1
                    if created.status_code != 201:
                        continue
                    order_id = created.json()["orderId"]
                    accepted.append((order_id, "CREATED"))
                    for action, status in (("pay", "PAID"), ("ship", "SHIPPED")):
                        step = client.post(f"/api/orders/{order_id}/{action}", params={"customerId": customer})
                        answers[step.status_code] += 1
                        if step.status_code == 202:
                            accepted.append((order_id, status))
                except httpx.TransportError:
                    if stop_load.is_set():
                        return
                    raise

    server = launch(args, topic_settings, tmp_path, first_log)
    try:
        wait_for(lambda: healthy(free_port), "serve to answer", server, first_log)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        wait_for(lambda: len(accepted) >= 30, "30 accepted requests", server, first_log)
        stop_load.set()
        took = terminate(server, first_log)
    finally:
        if server.poll() is None:
            server.kill()
    loader.join(timeout=60)
    assert not loader.is_alive()
    assert took < STOP_WITHIN, f"took {took:.1f}s"
    assert not [code for code in answers if code >= 500], dict(answers)
    first = first_log.read_text()
    assert "producer flushed and closed" in first
    for group in GROUPS:  # each group's child process committed and closed before serve exited
        assert f"{group} stopped after" in first and re.search(rf"{group} \(pid \d+\) stopped with exit code 0", first)

    done = committed(topic_settings, GROUPS)
    finished = assert_finished_is_committed(topic_settings, state, done)
    assert finished > 0

    server = launch(args, topic_settings, tmp_path, second_log)
    try:
        wait_for(lambda: healthy(free_port), "serve to answer again", server, second_log)
        wait_for_zero_lag(topic_settings, GROUPS, timeout=60)
        terminate(server, second_log)
    finally:
        if server.poll() is None:
            server.kill()
    assert_nothing_received_twice(second_log.read_text(), topic_settings, done)
    assert max(verdicts(topic_settings).values()) == 1  # the order-processor: each record exactly once
    history = {(o, e.status.value) for o, order in read_order_state(topic_settings).items() for e in order.history}
    assert set(accepted) <= history  # every accepted request's event was applied


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_of_consume_mid_stream(topic_settings: Settings, tmp_path: Path, signum: int) -> None:
    state, first_log, second_log = tmp_path / "state", tmp_path / "consume-1.log", tmp_path / "consume-2.log"
    args = ["consume", "--group", "order-processor", "--state-dir", str(state), "--instance-id", "graceful",
            "--log-records", "block"]
    events = plan_lifecycles(600, seed=10)
    published, stopped = threading.Event(), threading.Event()

    def publish() -> None:
        with OrderProducer(topic_settings) as producer:
            for n in range(0, len(events), 50):  # a steady stream; its second half only after the stop,
                if n == len(events) // 2 // 50 * 50:  # so the stop always lands mid-stream
                    stopped.wait(timeout=120)
                for future in [producer.publish(e) for e in events[n:n + 50]]:
                    future.result(timeout=60)
        published.set()

    consumer = launch(args, topic_settings, tmp_path, first_log)
    try:
        wait_for(lambda: "consuming" in first_log.read_text(), "consume to start", consumer, first_log)
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        wait_for(lambda: sum(committed(topic_settings, ("order-processor",)).values()) >= 200,
                 "200 events processed", consumer, first_log)
        took = terminate(consumer, first_log, signum)
    finally:
        stopped.set()
        if consumer.poll() is None:
            consumer.kill()
    assert took < STOP_WITHIN, f"took {took:.1f}s"
    assert "offsets committed" in first_log.read_text()
    publisher.join(timeout=120)
    assert published.is_set()

    done = committed(topic_settings, ("order-processor",))
    processed = verdicts(topic_settings)
    assert 200 <= len(processed) < len(events), "the stop did not land mid-stream"
    for message in read_records(topic_settings, topic_settings.topic, timeout=30):
        below = message.offset() < done[("order-processor", message.partition())]
        assert ((message.partition(), message.offset()) in processed) == below, (message.partition(), message.offset())

    consumer = launch(args, topic_settings, tmp_path, second_log)
    try:
        wait_for_zero_lag(topic_settings, ("order-processor",), timeout=90)
        terminate(consumer, second_log)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert_nothing_received_twice(second_log.read_text(), topic_settings, done)
    final = verdicts(topic_settings)
    assert len(final) == len(events) and max(final.values()) == 1  # the rest, each exactly once
    state_now = read_order_state(topic_settings)
    assert {(o, e.version) for o, order in state_now.items() for e in order.history} == {
        (e.order_id, e.version) for e in events}
