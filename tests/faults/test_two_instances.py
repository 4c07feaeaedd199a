"""Two `order-system serve` processes on one broker, as behind a load balancer (issue 11, 7a).

Each has its own --state-dir and --instance-id; their order-processors share the partitions and
each one's view holds every order. Checked over real HTTP: every order is answered by both (GET,
list, commands); conflicting commands sent at once through the two give one 2xx and one 409,
and the 2xx one is what order-state holds; a client alternating between the instances reads
its own writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from order_system.config import Settings
from order_system.kafka.changelog_reader import read_order_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ORDERS = 12


def launch(own: Settings, port: int, instance: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"serve-{instance}.log"
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": own.topic, "ORDER_SYSTEM_HOME": str(tmp_path / "home")}
    env.pop("ORDER_SYSTEM_INSTANCE_ID", None)
    command = [sys.executable, "-m", "order_system", "serve", "--api-only", "--port", str(port),
               "--state-dir", str(tmp_path / f"state-{instance}"), "--instance-id", f"test-{instance}"]
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT), log


def wait_healthy(process: subprocess.Popen[bytes], log: Path, base: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"serve ended\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"serve did not answer\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # another process: nothing to wait on but its port


@pytest.fixture
def instances(topic_settings: Settings, tmp_path: Path, port_pairs: Callable[[], int]) -> Iterator[list[httpx.Client]]:
    """Clients of two running `serve` processes (instances a and b) on the test's own topics."""
    ports = [port_pairs(), port_pairs()]
    started = [launch(topic_settings, port, name, tmp_path) for port, name in zip(ports, "ab")]
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) for port in ports]
    try:
        for (process, log), client in zip(started, clients):
            wait_healthy(process, log, str(client.base_url))
        yield clients
    finally:
        for client in clients:
            client.close()
        for process, log in started:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def create(client: httpx.Client, customer: str) -> str:
    answer = client.post("/api/orders", json={"customerId": customer})
    assert answer.status_code == 201, answer.text
    return answer.json()["orderId"]


def act(client: httpx.Client, order_id: str, action: str, customer: str) -> httpx.Response:
    return client.post(f"/api/orders/{order_id}/{action}", params={"customerId": customer})


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=60)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_two_serve_processes_answer_every_order_and_settle_conflicts(
        instances: list[httpx.Client], topic_settings: Settings) -> None:
    a, b = instances
    customer = "two-instances"
    # orders created through either instance; each GET goes to the OTHER one at once (read-your-writes)
    orders = []
    for n in range(ORDERS):
        first, other = (a, b) if n % 2 else (b, a)
        order_id = create(first, customer)
        seen = other.get(f"/api/orders/{order_id}")
        assert seen.status_code == 200 and seen.json()["status"] == "CREATED", seen.text
        orders.append(order_id)
    for client in (a, b):  # every order answered by both, list included
        bodies = [client.get(f"/api/orders/{o}").json() for o in orders]
        assert [(x["orderId"], x["status"]) for x in bodies] == [(o, "CREATED") for o in orders]
        listed = client.get("/api/orders", params={"customerId": customer, "limit": 100}).json()
        assert {row["orderId"] for row in listed["orders"]} == set(orders)

    # pay through a and cancel through b at once. Both may pass their check on version 1: the
    # processor accepts one, the other gets 409. (If a's pay is accepted before b even checked,
    # b's cancel is a later, valid step: both 2xx, in that order.)
    conflicts, accepted = 0, {}
    for order_id in orders[: ORDERS // 2]:
        pay, cancel = at_once([lambda o=order_id: act(a, o, "pay", customer),
                               lambda o=order_id: act(b, o, "cancel", customer)])
        codes = (pay.status_code, cancel.status_code)
        assert codes in {(202, 409), (409, 202), (202, 202)}, (pay.text, cancel.text)
        conflicts += "version-conflict" in (pay.text + cancel.text)
        accepted[order_id] = [(r.json()["version"], r.json()["status"]) for r in (pay, cancel) if r.status_code == 202]
        if codes == (202, 202):
            assert accepted[order_id] == [(2, "PAID"), (3, "CANCELLED")]

    # ship through a and cancel through b on paid orders: whatever the timing, exactly one can be
    # applied (neither SHIPPED -> CANCELLED nor CANCELLED -> SHIPPED is allowed)
    rest = orders[ORDERS // 2:]
    for order_id in rest:
        assert act(a if len(order_id) % 2 else b, order_id, "pay", customer).status_code == 202
    for order_id in rest:
        ship, cancel = at_once([lambda o=order_id: act(a, o, "ship", customer),
                                lambda o=order_id: act(b, o, "cancel", customer)])
        assert sorted([ship.status_code, cancel.status_code]) == [202, 409], (ship.text, cancel.text)
        conflicts += "version-conflict" in (ship.text + cancel.text)
        winner = ship if ship.status_code == 202 else cancel
        accepted[order_id] = [(2, "PAID"), (winner.json()["version"], winner.json()["status"])]
    assert conflicts > 0, "no command was ever rejected by the processor: the verdict path was not exercised"

    # what each 2xx said is what order-state holds, and both instances answer it
    state = read_order_state(topic_settings)
    for order_id, steps in accepted.items():
        history = [(e.version, e.status.value) for e in state[order_id].history]
        assert history == [(1, "CREATED"), *steps], (order_id, history)
        for client in (a, b):
            body = client.get(f"/api/orders/{order_id}").json()
            assert (body["version"], body["status"]) == history[-1]

    # a client alternating between the instances: every step succeeds and is read back at once
    for n in range(4):
        first, second = (a, b) if n % 2 else (b, a)
        order_id = create(first, customer)
        for step, (action, status) in enumerate([("pay", "PAID"), ("ship", "SHIPPED"), ("deliver", "DELIVERED")]):
            here, there = (second, first) if step % 2 == 0 else (first, second)
            answer = act(here, order_id, action, customer)
            assert answer.status_code == 202, answer.text
            assert there.get(f"/api/orders/{order_id}").json()["status"] == status
