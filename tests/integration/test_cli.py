"""The `order-system` command against the real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from order_system.config import Settings
from order_system.local.demo import plan_lifecycles
from order_system.kafka.topics import delete_topics


def cli(*args: str, topic: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"ORDER_SYSTEM_TOPIC": topic} if topic else {})}
    return subprocess.run([sys.executable, "-m", "order_system", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_topics_create_is_idempotent_and_produce_demo_reports_partitions(settings: Settings, unique) -> None:
    topic = unique("cli-orders")
    own = settings.with_topic(topic)
    try:
        first, second = cli("topics", "create", topic=topic), cli("topics", "create", topic=topic)
        assert first.returncode == second.returncode == 0
        assert re.findall(r"(\S+)\s+created", first.stdout) == list(own.all_topics)
        assert re.findall(r"(\S+)\s+exists", second.stdout) == list(own.all_topics)

        demo = cli("produce-demo", "--orders", "5", "--seed", "3", topic=topic)
        assert demo.returncode == 0, demo.stderr
        events = len(plan_lifecycles(5, seed=3))
        summary = re.search(rf"published {events} events of 5 orders to {topic}: (.*)", demo.stdout)
        assert summary, demo.stdout
        assert sum(int(n) for n in re.findall(r"partition \d: (\d+)", summary.group(1))) == events
        assert f"{events}/{events}" in demo.stderr  # the progress bar reached the end
    finally:
        delete_topics(own, list(own.all_topics))


def test_bad_arguments_are_refused_with_a_message() -> None:
    zero = cli("produce-demo", "--orders", "0")
    assert zero.returncode == 2 and "--orders must be at least 1" in zero.stderr
    unknown = cli("consume", "--group", "nobody")
    assert unknown.returncode == 2 and "invalid choice: 'nobody'" in unknown.stderr


def test_broker_status_says_running(settings: Settings) -> None:
    status = cli("broker", "status")
    assert status.returncode == 0
    assert status.stdout.startswith(f"running at {settings.bootstrap_servers}")
