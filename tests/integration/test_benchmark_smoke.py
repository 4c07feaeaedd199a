"""benchmarks/compare.py in its smallest mode: every row of issue 13's table gets a figure.

It checks that the benchmark runs end to end (Kafka's own tools, kafka-python, the
order-processor exactly once and at least once, wrk against ``serve`` and the trivial app, the
command load generator and the CPU per process, the latency runs) and writes its
CSV and chart; the figures themselves are reported by the benchmark, never asserted here.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from order_system.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHILD = "serve child: "  # benchmarks/cpu.py's rows of serve's child processes
ROWS = {
    ("produce", "raw confluent-kafka produce() loop"),
    ("produce", "Kafka ProducerPerformance (Java)"),
    ("produce", "raw loop encoding each event, no-op callback"),
    ("produce", "kafka-python producer"),
    ("produce", "OrderProducer.publish"),
    ("consume", "raw consume(500) + store_offsets"),
    ("consume", "raw poll() + store_offsets"),
    ("consume", "kafka-python poll(max_records=500)"),
    ("consume", "order-processor (runner_for, as serve runs it)"),
    ("exactly once vs at least once", "raw consume(500) + store_offsets, median of rounds"),
    ("exactly once vs at least once", "order-processor, exactly once (runner_for), median"),
    ("exactly once vs at least once", "order-processor, at least once (no transactions), median"),
    ("POST /api/orders", "trivial FastAPI endpoint, same body, same uvicorn"),
    ("POST /api/orders", "order-system serve (three groups running)"),
    ("GET /api/orders/{id}", "trivial FastAPI endpoint, same uvicorn"),
    ("GET /api/orders/{id}", "order-system serve (three groups running)"),
    ("commands p99 at 200/s", "trivial FastAPI app, pay/ship/deliver/cancel at 200/s"),
    ("commands p99 at 200/s", "order-system serve, pay/ship/deliver/cancel at 200/s"),
    ("CPU per command at 200/s", "all of them (serve, its children, broker, generator)"),
    ("CPU per command at 200/s", "serve's own process"),
    ("CPU per command at 200/s", "Kafka broker"),
    ("CPU per command at 200/s", "load generator (this process)"),
    ("latency p99", "Kafka EndToEndLatency (Java), unloaded"),
    ("latency p99", "publish -> processed at 200/s"),
    ("latency p99", "publish -> OrderView (processor in its own process) at 200/s"),
    ("memory", "RSS less order state, 1,000 events"),
    ("memory", "RSS less order state, 2,000 events"),
    ("memory per order", "order-processor state per order"),
    ("memory per order", "OrderView state per order"),
    ("poison 1 %", "order-processor, clean topic"),
    ("poison 1 %", "order-processor, 1 % poison records"),
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_smallest_run_reports_every_row(settings: Settings, tmp_path: Path) -> None:
    setup = subprocess.run([str(ROOT / "scripts" / "setup-wrk")], capture_output=True, text=True)
    if setup.returncode != 0:
        pytest.skip(f"wrk (the HTTP load generator) is not installed and cannot be here: {setup.stderr.strip()}")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--smoke", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with (tmp_path / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    figures = {(r["section"], r["path"]): float(r["value"]) for r in rows}
    # a row per child process of serve, if serve runs its groups in children (an idle one may show 0 ms)
    children = {row: figures.pop(row) for row in list(figures) if row[1].startswith(CHILD)}
    assert set(figures) == ROWS, done.stdout[-3000:]
    assert all(value >= 0 and math.isfinite(value) for value in children.values()), children
    bad = {row: value for row, value in figures.items() if not (value > 0 and math.isfinite(value))}
    assert not bad, f"rows without a positive figure: {bad}\n{done.stdout[-4000:]}"
    assert all(r["ratio"] for r in rows if r["baseline"] == "False"), "a row without its ratio"
    poison = next(r for r in rows if r["path"] == "order-processor, 1 % poison records")
    assert "dead letters = poison records (20)" in poison["note"], poison["note"]  # a count, not a figure
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_without_a_broker_it_says_so_in_one_line_at_once(free_port: int, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port}"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--smoke", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"benchmarks/compare.py: no Kafka broker answers at 127.0.0.1:{free_port} (nothing accepts connections "
        "there); start one with `order-system broker start`, or point KAFKA_BOOTSTRAP_SERVERS at your cluster"]
    assert not (tmp_path / "compare.csv").exists()
