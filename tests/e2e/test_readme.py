"""The README's examples run exactly as written (only the port and topic are the test's own).

The blocks are found by the NAME of their marker (``<!-- run: NAME -->``, see tests/doc_blocks.py).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from doc_blocks import block, reader_env, run_bash, serving

from order_system.config import Settings
from order_system.kafka.topics import delete_topics


def own_topic(tmp_path: Path) -> tuple[dict[str, str], Settings]:
    settings = Settings.from_env().with_topic(f"readme-{uuid.uuid4().hex[:8]}")
    return reader_env(tmp_path, ORDER_SYSTEM_TOPIC=settings.topic), settings


def test_the_ten_line_script(tmp_path: Path) -> None:
    script = block("readme-ten-lines")
    assert len([line for line in script.splitlines() if line.strip()]) <= 11
    env, settings = own_topic(tmp_path)
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    finally:
        delete_topics(settings, list(settings.all_topics))
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert int(counts["CREATED"][0]) == 50  # 50 orders created, each counted once
    assert int(counts["DELIVERED"][1]) + int(counts["CANCELLED"][1]) == 50  # every order ended


def test_the_curl_walkthrough_against_order_system_serve(tmp_path: Path, free_port: int) -> None:
    env, settings = own_topic(tmp_path)
    env["ORDER_SYSTEM_HOME"] = str(tmp_path)  # its own outbox
    command = shlex.split(block("readme-serve"))
    assert command[:2] == ["order-system", "serve"], command
    log = tmp_path / "serve.log"
    try:
        with serving(command, free_port, env, log):
            walkthrough = block("readme-curl-walkthrough").replace("localhost:8080", f"localhost:{free_port}")
            done = run_bash(walkthrough + 'echo "ORDER_ID=$ORDER_ID"\n', env)
            assert done.returncode == 0, done.stderr
            order_id = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
            assert '"status":"DELIVERED"' in done.stdout  # the deliver call was accepted
            deadline = time.monotonic() + 30
            while httpx.get(f"http://127.0.0.1:{free_port}/api/orders/{order_id}").json()["status"] != "DELIVERED":
                assert time.monotonic() < deadline, "the order never reached DELIVERED"
                time.sleep(0.1)  # the consumer applies the event asynchronously
    finally:
        delete_topics(settings, list(settings.all_topics))
    output = log.read_text()
    for status in ("CREATED", "PAID", "SHIPPED", "DELIVERED"):  # the tutorial's console blocks
        assert re.search(rf"partition \d+, offset \d+\n  key \(order id\): {order_id}\n  status: {status}", output)
    assert f"POST /api/orders/{order_id}/deliver -> 202" in output
