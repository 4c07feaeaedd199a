"""The README's examples run exactly as written (only the port and topic are the test's own)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from order_system.config import Settings
from order_system.kafka.topics import delete_topics

README = (Path(__file__).parents[2] / "README.md").read_text()


def block(after_heading: str, language: str) -> str:
    section = README[README.index(after_heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def own_topic_env() -> tuple[dict[str, str], Settings]:
    settings = Settings.from_env().with_topic(f"readme-{uuid.uuid4().hex[:8]}")
    return {**os.environ, "ORDER_SYSTEM_TOPIC": settings.topic}, settings


def test_the_ten_line_script(tmp_path: Path) -> None:
    script = block("## Ten lines", "python")
    assert len([line for line in script.splitlines() if line.strip()]) <= 11
    env, settings = own_topic_env()
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    finally:
        delete_topics(settings, list(settings.all_topics))
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert int(counts["CREATED"][0]) == 50  # 50 orders created, each counted once
    assert int(counts["DELIVERED"][1]) + int(counts["CANCELLED"][1]) == 50  # every order ended


def test_the_curl_walkthrough_against_order_system_serve(tmp_path: Path, free_port: int) -> None:
    env, settings = own_topic_env()
    env["ORDER_SYSTEM_HOME"] = str(tmp_path)  # its own outbox
    log = tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "order_system", "serve", "--port", str(free_port),
                               "--log-records", "block"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{free_port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)  # a starting server has no event to wait on
        walkthrough = block("The tutorial's calls", "bash").replace("localhost:8080", f"localhost:{free_port}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough + '\necho "ORDER_ID=$ORDER_ID"'],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        order_id = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
        assert '"status":"DELIVERED"' in done.stdout  # the deliver call was accepted
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{free_port}/api/orders/{order_id}").json()["status"] != "DELIVERED":
            assert time.monotonic() < deadline, "the order never reached DELIVERED"
            time.sleep(0.1)  # the consumer applies the event asynchronously
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
        delete_topics(settings, list(settings.all_topics))
    assert code == 0, log.read_text()[-3000:]
    output = log.read_text()
    for status in ("CREATED", "PAID", "SHIPPED", "DELIVERED"):
        assert re.search(rf"partition \d+, offset \d+\n  key \(order id\): {order_id}\n  status: {status}", output)
    assert f"POST /api/orders/{order_id}/deliver -> 202" in output
