"""What a newcomer sees when Kafka is not there: one clear line, fast, and no log flood.

Real processes throughout: the `order-system` command, `./scripts/test`, a real TCP server
that is not Kafka, and a real second broker that is SIGKILLed under running consumers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from order_system.local.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "order_system"]


def run_cli(bootstrap: str, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    began = time.monotonic()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - began


COMMANDS = [
    ("topics", "create"),
    ("produce-demo", "--orders", "1"),
    ("consume", "--group", "order-processor"),
    ("dlt", "list"),
    ("serve", "--port", "1"),  # never reached: the check comes first
]


def assert_one_clear_line(done: subprocess.CompletedProcess[str], seconds: float, *phrases: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert seconds < 10, f"took {seconds:.1f}s"
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_commands_without_a_broker_say_so_in_one_line(free_port: int) -> None:
    bootstrap = f"127.0.0.1:{free_port}"
    for command in COMMANDS:
        done, seconds = run_cli(bootstrap, *command)
        assert_one_clear_line(done, seconds, f"no Kafka broker answers at {bootstrap}", "order-system broker start")
    status, _ = run_cli(bootstrap, "broker", "status")
    assert status.returncode == 3 and status.stdout.startswith(f"stopped: nothing answers at {bootstrap}")


def test_commands_against_a_program_that_is_not_kafka_say_so(not_kafka_port: int) -> None:
    bootstrap = f"127.0.0.1:{not_kafka_port}"
    for command in COMMANDS:
        done, seconds = run_cli(bootstrap, *command)
        assert_one_clear_line(done, seconds, f"something answers at {bootstrap}, but it is not a Kafka broker")
    status, seconds = run_cli(bootstrap, "broker", "status")
    assert status.returncode == 3 and seconds < 10
    assert status.stdout.startswith(f"not Kafka: something answers at {bootstrap}"), status.stdout


def test_scripts_test_without_a_usable_broker_prints_one_error(not_kafka_port: int) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{not_kafka_port}"}
    done = subprocess.run([str(ROOT / "scripts" / "test"), "tests/integration/test_cli.py", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "no Kafka broker for the tests" in line]
    assert len(errors) == 1 and f"port {not_kafka_port}" in errors[0] and "not a Kafka broker" in errors[0], output


# ---- a broker that dies under running clients ------------------------------------------------

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (WARNING|ERROR|CRITICAL) (.*)$")
# librdkafka's lines ("FAIL [client#consumer-1] ...") and the runner's ("[client] consumer error: ...")
CLIENT = re.compile(r"^(?:[\w.]+: )?[A-Z]+ \[([\w.-]+)#[a-z]+-\d+\]|\[([\w.-]+)\] consumer error")


def error_lines_per_client(log: str) -> dict[str, list[float]]:
    """For each Kafka client, the times (s) of its warning-or-worse lines about the connection."""
    seen: dict[str, list[float]] = defaultdict(list)
    for line in log.splitlines():
        stamp = STAMP.match(line)
        client = CLIENT.search(stamp.group(3)) if stamp else None
        if stamp and client:
            when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            seen[client.group(1) or client.group(2)].append(when)
    return seen


class Logged:
    """A child process whose combined output is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=ROOT)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(re.search(pattern, line) for line in self.lines), timeout)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        return "\n".join(self.lines)


@pytest.mark.slow
def test_a_dead_broker_is_logged_at_most_once_per_10s_per_client(spare_broker: LocalBroker, unique,
                                                                  free_port: int) -> None:
    assert spare_broker.start(timeout=120) == "started"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": spare_broker.bootstrap, "ORDER_SYSTEM_TOPIC": unique("quiet")}
    created = subprocess.run([*CLI, "topics", "create"], env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    consume = Logged([*CLI, "consume", "--group", "notification-service"], env)
    serve = Logged([*CLI, "serve", "--port", str(free_port)], env)
    try:
        assert consume.wait_for(r"consuming .*Ctrl-C to stop", 90), consume.lines
        assert serve.wait_for(r"Uvicorn running on", 90), serve.lines
        assert consume.wait_for(r"assigned", 60) and serve.wait_for(r"assigned", 60)
        pid = spare_broker.recorded_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a real crash, not a polite stop
        killed_at = time.time()
        assert spare_broker.wait_stopped(timeout=30)
        threading.Event().wait(13)  # observe a fixed window, longer than one 10 s period
        watched_until = time.time()
    finally:
        logs = {"consume": consume.stop(), "serve": serve.stop()}
    for name, log in logs.items():
        after = {client: [t for t in times if t >= killed_at - 0.5]
                 for client, times in error_lines_per_client(log).items()}
        after = {client: times for client, times in after.items() if times}
        assert after, f"{name} logged no error at all after the broker died:\n{log[-3000:]}"
        for client, times in after.items():
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert all(gap >= 9.5 for gap in gaps), f"{name}/{client} logged errors {gaps} s apart:\n{log[-3000:]}"
        # within the window (a stop with the broker gone may take longer and log on meanwhile)
        total = sum(len([t for t in times if t <= watched_until]) for times in after.values())
        assert total <= 2 * len(after), f"{name}: {total} error lines from {len(after)} clients in 13 s"
