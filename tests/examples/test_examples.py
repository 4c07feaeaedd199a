"""The examples/ scripts: each runs against the real broker and prints what it teaches; each is
one screen and imports nothing from order_system but the pure domain; each tidies up after itself
and says in one line when no broker answers."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from order_system.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NAMES = ["keyed_producer", "consumer_loop", "three_groups", "retry_and_dlt", "exactly_once", "rest_endpoint"]
RUN_TIMEOUT = 120  # each finishes in well under 20 s on its own; the machine may be busy
# names the examples give their own topics and groups (a random hex suffix each run)
OWN_TOPIC = re.compile(r"^example-[a-z-]+-[0-9a-f]{8}(-retry-[01]|-dlt)?$")
OWN_GROUP = re.compile(r"^(order-processor|notification-service|analytics-service|recommendation-service|reader)"
                       r"-[0-9a-f]{8}$")


def example_env(bootstrap: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": path}


def start(name: str, bootstrap: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=ROOT, env=example_env(bootstrap),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- one screen, and only the pure domain ------------------------------------------------------

def test_the_examples_directory_holds_exactly_the_tested_scripts() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_is_under_80_lines(name: str) -> None:
    lines = (EXAMPLES / f"{name}.py").read_text().splitlines()
    assert 20 < len(lines) < 80, f"{name}.py has {len(lines)} lines"


def imported_modules(source: str) -> list[tuple[str, int]]:
    """(module, relative level) of every import statement in ``source``."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "order_system" and not node.level:
            found += [(f"order_system.{alias.name}", 0) for alias in node.names]  # from order_system import x
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def outside_domain(modules: list[tuple[str, int]]) -> list[str]:
    """Imports an example may not have: relative ones, and order_system beyond order_system.domain."""
    def allowed(module: str, level: int) -> bool:
        parts = module.split(".")
        return level == 0 and (parts[0] != "order_system" or parts[:2] == ["order_system", "domain"])

    return [("." * level) + module for module, level in modules if not allowed(module, level)]


def test_the_import_check_catches_what_it_must() -> None:
    source = ("import order_system.kafka.topics\nfrom order_system import config, domain\nimport order_system\n"
              "from order_system.services import x\nfrom . import helper\nfrom .domain import events\n"
              "from order_system.domain.events import OrderEvent\nimport order_system.domain\nimport confluent_kafka\n")
    assert outside_domain(imported_modules(source)) == [
        "order_system.kafka.topics", "order_system.config", "order_system", "order_system.services", ".", ".domain"]


@pytest.mark.parametrize("name", NAMES)
def test_example_imports_only_the_domain_from_order_system(name: str) -> None:
    modules = imported_modules((EXAMPLES / f"{name}.py").read_text())
    assert outside_domain(modules) == []
    assert any(m.startswith("confluent_kafka") for m, _ in modules)
    assert any(m.startswith("order_system.domain") for m, _ in modules)


# ---- no broker: one clear line, a non-zero status ----------------------------------------------

def test_every_example_says_in_one_line_that_no_broker_answers() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{s.getsockname()[1]}"
    running = {name: start(name, bootstrap) for name in NAMES}  # side by side: each waits 5 s for metadata
    problems = []
    try:
        for name, process in running.items():
            out, err = process.communicate(timeout=RUN_TIMEOUT)
            lines = err.strip().splitlines()
            if process.returncode != 1 or out or len(lines) != 1 or not lines[0].startswith(
                    f"no Kafka broker answers at {bootstrap} ("):
                problems.append(f"{name}: exit {process.returncode}, stdout {out!r}, stderr {err[-2000:]!r}")
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert problems == []


# ---- against the broker: what each one prints ----------------------------------------------------

@pytest.fixture(scope="module")
def outputs(settings: Settings) -> Iterator[dict[str, str]]:
    """Every example run to its end against the broker, side by side (each uses its own topics and
    groups), as {name: stdout}; afterwards, none of their topics or groups is left."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, **settings.client_options})

    def own() -> set[str]:
        topics = {t for t in admin.list_topics(timeout=10).topics if OWN_TOPIC.match(t)}
        groups = {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid
                  if OWN_GROUP.match(g.group_id)}
        return topics | groups

    before = own()
    running = {name: start(name, settings.bootstrap_servers) for name in NAMES}
    found, problems = {}, []
    try:
        for name, process in running.items():
            try:
                out, err = process.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
                problems.append(f"{name} still ran after {RUN_TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
                continue
            if process.returncode != 0:
                problems.append(f"{name} exited {process.returncode}\nstdout:\n{out}\nstderr:\n{err}")
            found[name] = out
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert problems == [], "\n\n".join(problems)
    yield found
    deadline = time.monotonic() + 20  # a deletion the broker acknowledged shows in its metadata soon after
    while (left := own() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left behind: {sorted(left)}"


@pytest.mark.broker
def test_keyed_producer_puts_each_orders_events_on_one_partition_in_order(outputs: dict[str, str]) -> None:
    out = outputs["keyed_producer"]
    published = re.findall(r"(?m)^published order=(\w+) status=(\w+) partition=(\d+) offset=(\d+)$", out)
    by_order: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for order, status, partition, offset in published:
        by_order[order].append((status, int(partition), int(offset)))
    assert len(by_order) == 3, out
    for order, events in by_order.items():
        assert [status for status, _, _ in events] == ["CREATED", "PAID", "SHIPPED", "DELIVERED"], out
        assert len({partition for _, partition, _ in events}) == 1, f"order {order} on several partitions:\n{out}"
        offsets = [offset for _, _, offset in events]
        assert offsets == sorted(set(offsets)), f"order {order}'s offsets not increasing:\n{out}"
    assert "not acknowledged: 0" in out


@pytest.mark.broker
def test_consumer_loop_dispatches_each_status_and_commits_after_handling(outputs: dict[str, str]) -> None:
    out = outputs["consumer_loop"]
    pairs = re.findall(r"(?m)^received partition=(\d+) offset=(\d+) key=(\w+)\n  \[(\w+)\] (\w+): ", out)
    assert len(pairs) == 6, out
    assert all(key == order for _, _, key, _, order in pairs), out  # each handler ran on the record just received
    steps: dict[str, list[str]] = defaultdict(list)
    for _, _, key, status, _ in pairs:
        steps[key].append(status)
    assert sorted(steps.values()) == [["CREATED", "CANCELLED"], ["CREATED", "PAID", "SHIPPED", "DELIVERED"]], out
    committed = re.search(r"(?m)^committed offsets: \{(.*)\}$", out)
    assert committed, out
    # a committed offset is the next one to read: on a fresh topic, the number of records handled there
    assert sum(int(offset) for _, offset in re.findall(r"(\d+): (\d+)", committed[1])) == 6, out
    assert "handled 6 of 6 records" in out


@pytest.mark.broker
def test_three_groups_each_see_every_event_and_a_fourth_changes_nothing(outputs: dict[str, str]) -> None:
    out = outputs["three_groups"]
    produced = re.search(r"(?m)^produced (\d+) events: (.+)$", out)
    assert produced, out
    count, summary = produced.groups()
    for group in ("order-processor", "notification-service", "analytics-service", "recommendation-service"):
        assert f"[{group}] saw {count} of {count} events: {summary}\n" in out
    offsets = re.findall(r"(?m)^\[([\w-]+)\] committed offsets before (\{.*\}), after (\{.*\})$", out)
    assert [group for group, _, _ in offsets] == ["order-processor", "notification-service", "analytics-service"]
    for group, before, after in offsets:
        assert before == after, out
        assert sum(int(n) for n in re.findall(r": (\d+)", before)) == int(count), out


@pytest.mark.broker
def test_retry_and_dlt_forwards_three_times_and_keeps_the_origin(outputs: dict[str, str]) -> None:
    out = outputs["retry_and_dlt"]
    assert re.search(r"(?m)^handled CREATED of order \w+$", out), out
    attempts = re.findall(r"(?m)^attempt (\d) failed at (\S+) partition=(\d+) offset=(\d+): payment gateway timed out "
                          r"-> (\S+)$", out)
    assert [int(n) for n, *_ in attempts] == [1, 2, 3], out
    topic = attempts[0][1]
    assert [a[1] for a in attempts] == [topic, f"{topic}-retry-0", f"{topic}-retry-1"]
    assert [a[4] for a in attempts] == [f"{topic}-retry-0", f"{topic}-retry-1", f"{topic}-dlt"]
    assert f"dead letter at {topic}-dlt partition=" in out
    headers = dict(re.findall(r"(?m)^  ([\w-]+): (.*)$", out.split("dead letter at", 1)[1]))
    assert headers["kafka_dlt-original-topic"] == topic
    assert (headers["kafka_dlt-original-partition"], headers["kafka_dlt-original-offset"]) == attempts[0][2:4]
    assert headers["kafka_dlt-exception-fqcn"] == "builtins.RuntimeError"
    assert headers["kafka_dlt-exception-message"] == "payment gateway timed out"
    assert headers["retry_topic-attempts"] == "3"
    assert headers["event-type"] == "OrderPaid"  # the record's own headers travel with it


@pytest.mark.broker
def test_exactly_once_reader_sees_each_output_once(outputs: dict[str, str]) -> None:
    out = outputs["exactly_once"]
    assert re.search(r"(?m)^transaction 1: wrote 3 notes; .*: aborted$", out), out
    assert re.search(r"(?m)^transaction 2: wrote 3 notes, committed", out), out
    readers = dict(re.findall(r"(?m)^(read_\w+) reader: (\d+ notes, \d+ distinct)$", out))
    assert readers == {"read_committed": "3 notes, 3 distinct", "read_uncommitted": "6 notes, 3 distinct"}, out
    committed = re.search(r"(?m)^read_committed reader: .*\n((?:  .*\n)+)", out)[1].splitlines()
    assert [line.split()[-1] for line in committed] == ["CREATED", "PAID", "SHIPPED"], out


@pytest.mark.broker
def test_rest_endpoint_answers_once_the_event_is_in_the_topic(outputs: dict[str, str]) -> None:
    out = outputs["rest_endpoint"]
    reply = re.search(r"(?m)^POST /api/orders -> 201 (\{.*\})$", out)
    assert reply, out
    answer = json.loads(reply[1])
    assert re.fullmatch(r"[a-z0-9]{8}", answer["orderId"]), answer
    assert answer["partition"] in (0, 1, 2) and answer["offset"] == 0, answer  # a fresh topic, one event
    assert (f"read back at partition={answer['partition']} offset={answer['offset']}: OrderCreated of order "
            f"{answer['orderId']} for customer-123") in out
