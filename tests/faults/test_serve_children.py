"""`order-system serve` runs each consumer group in a child process (interfaces/children.py).

Checked on real processes against the real broker: a killed order-processor child is started
again and commands work afterwards; SIGTERM to serve stops serve and every child (exit 0); a
serve killed with SIGKILL leaves no child running; a child that keeps ending stops serve with
exit code 1 and a message that names it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from order_system.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GROUPS = ("order-processor", "notification-service", "analytics-service")
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")


class Serve:
    """A running ``order-system serve`` process whose combined output goes to a log file."""

    def __init__(self, args: list[str], own: Settings, home: Path, port: int) -> None:
        self.log, self.port = home / "serve.log", port
        env = {**os.environ, "ORDER_SYSTEM_TOPIC": own.topic, "ORDER_SYSTEM_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "order_system", "serve", "--port", str(port), *args],
                                        env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.process.poll() is None, f"serve ended while waiting for {what}\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.text()[-4000:]}"
            time.sleep(0.1)  # another process: nothing to wait on but its log and its port

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def children(self) -> dict[str, int]:
        """Each group's latest child pid, as serve logged it."""
        return {group: int(pid) for group, pid in STARTED.findall(self.text())}

    def every_child(self) -> list[int]:
        """Every child pid serve ever logged, restarted ones too."""
        return [int(pid) for _, pid in STARTED.findall(self.text())]


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return the ones still running at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)  # other processes' exits: nothing to wait on but /proc
    return left


@pytest.fixture
def started(topic_settings: Settings, tmp_path: Path, free_port: int) -> Iterator[Callable[..., Serve]]:
    """Start serve with extra arguments (its state dir in the test's tmp_path); killed at the end if still running."""
    made: list[Serve] = []

    def start(*args: str) -> Serve:
        serve = Serve(["--state-dir", str(tmp_path / "state"), *args], topic_settings, tmp_path, free_port)
        made.append(serve)
        return serve

    yield start
    for serve in made:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait(timeout=30)
        for pid in serve.every_child():
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_order_processor_child_is_started_again(started: Callable[..., Serve], free_port: int,
                                                         topic_settings: Settings) -> None:
    serve = started("--api-only")
    serve.wait_for(serve.healthy, "/health to answer 200")
    serve.wait_for(lambda: "order-processor" in serve.children(), "the order-processor child")
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port}", timeout=30) as client:
        created = client.post("/api/orders", json={"customerId": "c-1"})
        assert created.status_code == 201, created.text
        order_id = created.json()["orderId"]
        paid = client.post(f"/api/orders/{order_id}/pay", params={"customerId": "c-1"})
        assert paid.status_code == 202, paid.text

        first = serve.children()["order-processor"]
        os.kill(first, signal.SIGKILL)
        serve.wait_for(lambda: serve.children()["order-processor"] != first, "the order-processor to be started again")
        restarted_at = len(serve.text())
        restarted = rf"order-processor \(pid {first}\) ended on its own with signal SIGKILL; starting it again in 1 s"
        assert re.search(restarted, serve.text()), serve.text()[-4000:]
        # the new child holds the partitions once the dead one's session has expired (10 s at most)
        serve.wait_for(lambda: re.search(rf"\[order-processor\] assigned {re.escape(topic_settings.topic)}\[",
                                         serve.text()[restarted_at:]) is not None,
                       "the restarted order-processor to get its partitions")
        shipped = client.post(f"/api/orders/{order_id}/ship", params={"customerId": "c-1"})
        assert shipped.status_code == 202, shipped.text
        assert client.get(f"/api/orders/{order_id}").json()["status"] == "SHIPPED"
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=60) == 0, serve.text()[-4000:]
    assert not wait_until_gone(serve.every_child(), 5)


def test_sigterm_stops_serve_and_every_child(started: Callable[..., Serve]) -> None:
    serve = started()
    serve.wait_for(serve.healthy, "/health to answer 200")
    serve.wait_for(lambda: set(serve.children()) == set(GROUPS), "the three children")
    children = serve.children()
    assert all(running(pid) for pid in children.values()), children
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=60) == 0, serve.text()[-4000:]
    assert not wait_until_gone(list(children.values()), 1), serve.text()[-4000:]  # serve waited for them
    text = serve.text()
    for group, pid in children.items():  # each committed and closed, and serve saw it end
        assert f"{group} stopped after" in text, text[-4000:]
        assert f"{group} (pid {pid}) stopped with exit code 0" in text, text[-4000:]


def test_children_of_a_killed_serve_stop_within_seconds(started: Callable[..., Serve]) -> None:
    serve = started()
    serve.wait_for(serve.healthy, "/health to answer 200")
    serve.wait_for(lambda: all(f"[{g}] assigned" in serve.text() for g in GROUPS), "the three groups to be assigned")
    children = serve.children()
    serve.process.send_signal(signal.SIGKILL)
    serve.process.wait(timeout=30)
    left = wait_until_gone(list(children.values()), 10)
    assert not left, f"children {left} outlived serve\n{serve.text()[-4000:]}"
    text = serve.text()
    for group in GROUPS:  # each got SIGTERM from the kernel and stopped as it does on Ctrl-C
        assert f"{group} stopped after" in text, text[-4000:]


def test_a_child_that_keeps_ending_stops_serve_with_exit_code_1(started: Callable[..., Serve],
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "notification-service.db").write_bytes(b"this is not an SQLite database " * 100)  # a damaged store
    serve = started()
    try:
        code = serve.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve kept running\n{serve.text()[-4000:]}") from None
    text = serve.text()
    assert code == 1, text[-4000:]
    assert re.search(r"order-system: notification-service ended on its own 4 times within 60 s "
                     r"\(last: exit code 1\); serve stopped", text), text[-4000:]
    delays = re.findall(r"notification-service \(pid \d+\) ended on its own with exit code 1; "
                        r"starting it again in (\d) s", text)
    assert delays == ["1", "2", "3"], text[-4000:]  # a little longer each time
    assert not wait_until_gone(serve.every_child(), 1), text[-4000:]  # the others were stopped, not left behind
