"""The runnable blocks of docs/*.md and benchmarks/README.md, run as written against the test
broker, each with a topic of its own (``ORDER_SYSTEM_TOPIC``); only a port or an output folder
is the test's own. The README's blocks are run by test_readme.py."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

from doc_blocks import block, reader_env, run_bash, serving

from order_system.config import Settings
from order_system.kafka.topics import delete_topics


def own_topic(tmp_path: Path, prefix: str) -> tuple[dict[str, str], Settings]:
    settings = Settings.from_env().with_topic(f"{prefix}-{uuid.uuid4().hex[:8]}")
    return reader_env(tmp_path, ORDER_SYSTEM_TOPIC=settings.topic), settings


def test_the_broker_and_topics_commands(tmp_path: Path) -> None:
    env, settings = own_topic(tmp_path, "docs-ops")
    try:
        done = run_bash(block("ops-broker-topics", "docs/operations.md"), env)
    finally:
        delete_topics(settings, list(settings.all_topics))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running" in done.stdout  # broker status
    for topic in settings.all_topics:
        assert f"{topic} " in done.stdout, (topic, done.stdout)


def test_a_missing_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = run_bash(block("ops-no-broker", "docs/operations.md"), reader_env(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == block("ops-no-broker-output", "docs/operations.md").strip()


def test_produce_demo_then_dlt_list(tmp_path: Path) -> None:
    env, settings = own_topic(tmp_path, "docs-demo")
    try:
        done = run_bash(block("ops-produce-demo", "docs/operations.md"), env)
    finally:
        delete_topics(settings, list(settings.all_topics))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"of 100 orders to {settings.topic}" in done.stdout
    assert f"{settings.dead_letter_topic} is empty" in done.stdout


def test_the_version_policy_snippet_prints_what_the_docs_say() -> None:
    script = block("versions-rebuild", "docs/failures-and-versions.md")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == block("versions-rebuild-output", "docs/failures-and-versions.md")


def test_idempotency_keys_against_order_system_serve(tmp_path: Path, free_port: int) -> None:
    env, settings = own_topic(tmp_path, "docs-idem")
    env["ORDER_SYSTEM_HOME"] = str(tmp_path)  # its own outbox
    try:
        with serving(["order-system", "serve", "--api-only"], free_port, env, tmp_path / "serve.log"):
            script = block("rest-idempotency", "docs/rest-api.md").replace("localhost:8080", f"localhost:{free_port}")
            done = run_bash(script + 'echo "ORDER_ID=$ORDER_ID"\n', env)
    finally:
        delete_topics(settings, list(settings.all_topics))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    order_id = lines[-1].split("=", 1)[1]
    answers = [(json.loads(line.rsplit(" -> ", 1)[0]), int(line.rsplit(" -> ", 1)[1])) for line in lines[:-1]]
    assert [code for _, code in answers] == [201, 202, 202, 409], done.stdout
    created, paid, repeated, reused = (body for body, _ in answers)
    assert created["orderId"] == order_id  # the same key made the same order
    assert paid["version"] == repeated["version"] == 2 and repeated["offset"] is None  # paid once
    assert "already used for PAID" in reused["error"]


def test_the_benchmark_chart_redraws_from_its_csv(tmp_path: Path) -> None:
    command = block("bench-redraw", "benchmarks/README.md")
    out = tmp_path / "redrawn"
    done = run_bash(command.replace("/tmp/redrawn", shlex.quote(str(out))), reader_env(tmp_path), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OrderProducer.publish" in done.stdout and (out / "compare.png").stat().st_size > 10_000
