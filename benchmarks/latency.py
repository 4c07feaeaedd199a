"""The latency rows of ``benchmarks/compare.py``: new orders published at a fixed rate, each
timed from ``publish()`` to its state being visible, p50 and p99 in ms.

- ``publish_to_processed``: the order-processor runs in the benchmark's own process; an event
  is done when the processor's in-memory state shows it (``OrderProcessor.wait_for_version``).
- ``publish_to_view``: the order-processor runs in ANOTHER process
  (``python -m order_system consume --group order-processor``), as it would in production; an
  event is done when a read_committed ``OrderView`` in the benchmark's process shows it, so its
  latency includes the processor's transaction commit and the view's read of ``order-state``.

Both publish from the benchmark's process through ``OrderProducer`` and watch each partition's
events in publishing order (one thread per partition).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from order_system import OrderProducer, OrderView, Settings
from order_system.domain.events import OrderEvent

Seen = Callable[[str, int, float], bool]  # wait_for_version(order_id, version, timeout)
GRACE_SECONDS = 30.0  # once publishing ends, how long the rest may take before counting as missing


def publish_and_watch(settings: Settings, rate: int, seconds: float, seen: Seen) -> tuple[float, float, str]:
    """Publish ``rate`` new orders a second for ``seconds``; an order's latency runs from its
    publish() to ``seen(order_id, 1, ...)`` returning True. (p50, p99) in ms, and a note."""
    published: dict[int, list[tuple[str, float]]] = {}
    latencies: list[float] = []
    last_seen = [0.0]  # perf_counter() when the last order was seen done
    lock = threading.Condition()
    finished = threading.Event()
    deadline = [time.monotonic() + seconds + 3600.0]  # once publishing ends: GRACE_SECONDS more at most

    def watch(partition: int) -> None:
        position = 0
        while True:
            with lock:
                lock.wait_for(lambda: len(published.get(partition, ())) > position or finished.is_set(), 1.0)
                todo = published.get(partition, [])[position:]
            if not todo and finished.is_set():
                return
            for order_id, sent in todo:
                left = deadline[0] - time.monotonic()
                if left <= 0:
                    return  # the rest were not processed in time: counted as missing
                if seen(order_id, 1, min(left, 30.0)):
                    now = time.perf_counter()
                    latencies.append((now - sent) * 1000)
                    last_seen[0] = max(last_seen[0], now)
                position += 1

    def record(order_id: str, sent: float) -> Callable[[object, object], None]:
        def done(delivery, error) -> None:  # type: ignore[no-untyped-def]
            if delivery is not None:
                with lock:
                    published.setdefault(delivery.partition, []).append((order_id, sent))
                    lock.notify_all()
        return done

    watchers = [threading.Thread(target=watch, args=(p,), daemon=True) for p in range(settings.partitions)]
    for thread in watchers:
        thread.start()
    total = int(rate * seconds)
    with OrderProducer(settings) as producer:
        began = time.perf_counter()
        for n in range(total):
            due = began + n / rate
            pause = due - time.perf_counter()
            if pause > 0.001:
                time.sleep(pause)  # pacing the load generator, not waiting for a condition
            event = OrderEvent.created(uuid.uuid4().hex[:16], "customer-1")  # no two alike
            producer.publish(event, on_delivery=record(event.order_id, time.perf_counter()))
        sent_in = time.perf_counter() - began
    deadline[0] = time.monotonic() + GRACE_SECONDS
    finished.set()
    with lock:
        lock.notify_all()
    for thread in watchers:
        thread.join(120)
    held = len(latencies) / (last_seen[0] - began) if last_seen[0] > began else 0.0
    note = (f"{len(latencies)} of {total} events processed ({GRACE_SECONDS:.0f} s after the last publish at most); "
            f"{total / sent_in:,.0f}/s published, {held:,.0f}/s processed (first publish to last seen)")
    if len(latencies) < 2:
        return float("nan"), float("nan"), note
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98], note


def publish_to_processed(settings: Settings, rate: int, seconds: float) -> tuple[float, float, str]:
    """The order-processor (``runner_for``, as serve runs it) in this process; (p50, p99) in ms."""
    from compare import processor_runner

    runner, processor = processor_runner(settings)
    with runner:
        runner.wait_assigned(60)
        return publish_and_watch(settings, rate, seconds, processor.wait_for_version)


def publish_to_view(settings: Settings, rate: int, seconds: float, work: Path) -> tuple[float, float, str]:
    """The order-processor in another process (``consume --group order-processor``), a
    read_committed ``OrderView`` here; (p50, p99) in ms. The processor is started and stopped
    here; timing starts once a first order went through it (it holds its partitions)."""
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": settings.topic, "ORDER_SYSTEM_HOME": str(work / "home-view"),
           "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    log = work / f"consume-{settings.topic}.log"
    process = subprocess.Popen([sys.executable, "-m", "order_system", "consume", "--group", "order-processor",
                                "--instance-id", f"bench-{uuid.uuid4().hex[:8]}"],
                               env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        with OrderView(settings).start(timeout=60) as view:
            first = OrderEvent.created(uuid.uuid4().hex[:16], "customer-1")
            with OrderProducer(settings) as producer:
                producer.publish(first).result(60)
            deadline = time.monotonic() + 120
            while not view.wait_for_version(first.order_id, 1, 0.5):  # its first verdict: it holds its partitions
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the order-processor process never processed a first order:\n"
                                       f"{log.read_text(errors='replace')[-2000:]}")
            p50, p99, note = publish_and_watch(settings, rate, seconds, view.wait_for_version)
        return p50, p99, note + "; processor in its own process, state read by a read_committed OrderView here"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
