"""`order-system serve` and `order-system consume --metrics-port` as real processes, scraped over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from order_system.config import Settings
from order_system.interfaces.metrics import sample_value as value
from order_system.interfaces.metrics import wait_for_metrics
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles

GROUPS = ("order-processor", "notification-service", "analytics-service")


@contextmanager
def running(args: list[str], topic: str, home: Path) -> Iterator[subprocess.Popen[str]]:
    """``order-system ARGS`` on ``topic`` with its own home (outbox, state); interrupted on exit."""
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": topic, "ORDER_SYSTEM_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = (home / "process.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "order_system", *args], env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def scrape_until(url: str, ready: Callable[[pd.DataFrame], bool], process: subprocess.Popen[str],
                 home: Path) -> pd.DataFrame:
    """Scrape until ``ready(frame)``; on a timeout, fail with the process's log."""
    try:
        return wait_for_metrics(url, lambda frame: process.poll() is None and ready(frame), timeout=90)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\nexit code {process.poll()}; the process's log:\n{(home / 'process.log').read_text()}")


def test_serve_exposes_metrics_outside_the_api(topic_settings: Settings, free_port: int, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port}"
    with running(["serve", "--port", str(free_port)], topic_settings.topic, tmp_path) as serve:
        scrape_until(f"{base}/metrics", lambda f: value(f, "order_system_consumer_lag_available") == 1,
                     serve, tmp_path)
        with httpx.Client(base_url=base, timeout=30) as client:
            created = client.post("/api/orders", json={"customerId": "customer-7"})
            assert created.status_code == 201, created.text
            order_id = created.json()["orderId"]
            for action in ("pay", "ship", "deliver"):
                answer = client.post(f"/api/orders/{order_id}/{action}", params={"customerId": "customer-7"})
                assert answer.status_code == 202, answer.text
            assert client.get("/api/orders/no-such-order").status_code == 404
            assert client.get(f"/no/such/path/{order_id}").status_code == 404
            assert "/metrics" not in client.get("/openapi.json").json()["paths"]
        with OrderProducer(topic_settings) as producer:  # bytes that are no event at all, keyed like one
            producer.publish_raw(b"\xff not json {", key=b"poison-serve").result(timeout=30)

        # the poison record is dead-lettered by the two groups reading order-events; the
        # notification-service reads the processor's verdicts, and a rejected one is skipped
        dead = {"order-processor": 1, "notification-service": 0, "analytics-service": 1}
        frame = scrape_until(f"{base}/metrics", lambda f: all(
            value(f, "order_system_records_handled_total", group=g) == 4
            and value(f, "order_system_records_dead_lettered_total", group=g) == dead[g]
            and value(f, "order_system_consumer_lag", group=g) == 0 for g in GROUPS), serve, tmp_path)

    requests = frame[frame["name"] == "order_system_http_request_duration_seconds_count"]
    counted = {(r.method, r.route, r.status): r.value for r in requests.itertuples()}
    assert counted[("POST", "/api/orders", "201")] == 1
    assert counted[("POST", "/api/orders/{order_id}/{action}", "202")] == 3
    assert counted[("GET", "/api/orders/{order_id}", "404")] == 1
    assert counted[("GET", "unmatched", "404")] == 1
    assert not any(order_id in route for route in requests["route"])  # templates, never raw paths
    lag = frame[frame["name"] == "order_system_consumer_lag"]
    assert set(zip(lag["group"], lag["partition"])) == {(g, str(p)) for g in GROUPS for p in range(3)}
    assert value(frame, "order_system_outbox_records") == 0


def test_consume_serves_metrics_on_its_own_port(topic_settings: Settings, free_port: int, tmp_path: Path) -> None:
    events = plan_lifecycles(5, seed=21)
    with OrderProducer(topic_settings) as producer:
        futures = [producer.publish(e) for e in events]
        futures.append(producer.publish_raw(b"\xff not json {", key=b"poison-consume"))
    [f.result(timeout=30) for f in futures]
    group = "analytics-service"
    url = f"http://127.0.0.1:{free_port}/metrics"

    with running(["consume", "--group", group, "--metrics-port", str(free_port)], topic_settings.topic,
                 tmp_path) as consume:
        frame = scrape_until(url, lambda f: value(f, "order_system_records_handled_total", group=group) == len(events)
                             and value(f, "order_system_records_dead_lettered_total", group=group) == 1
                             and value(f, "order_system_consumer_lag", group=group) == 0, consume, tmp_path)
    assert consume.returncode == 0, (tmp_path / "process.log").read_text()
    assert set(frame.loc[frame["name"] == "order_system_consumer_lag", "group"]) == {group}
    assert f"metrics at {url}" in (tmp_path / "process.log").read_text()


def test_consume_refuses_a_metrics_port_that_is_taken(free_port: int) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "order_system", "consume", "--group", "order-processor",
                                 "--metrics-port", str(free_port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{free_port}" in result.stderr
    assert "choose another --metrics-port" in result.stderr
