"""Memory of the API's command path against the number of orders it has seen.

    .venv/bin/python benchmarks/api_memory.py [--orders 1000000] [--lag 1000] [--kafka 2000]

Going through Kafka for a million orders takes too long on a laptop, so the first part drives
the command path's bookkeeping in-process: for each order, what ``OrderCommands`` does around a
publish (take the order's lock, read-your-writes check, track the write), with the real
order-processor view (``OrderProcessor`` on a SQLite file) applying each event ``--lag`` events
later, as a consumer running behind would. Python memory is measured with tracemalloc (SQLite's
own pages are not Python memory: they are the view, reported separately as bytes per order).

The baseline, measured in the same run on the same inputs, is the bookkeeping ``OrderCommands``
had before (a lock and a version per order, kept forever). Every memory figure is printed as a
ratio to the same variant's figure at the first checkpoint: flat means within 0.90-1.10.
Before measuring, each run creates 50,000 throwaway events to fill pydantic-core's bounded
string cache (see ``warm_up``). A million orders take about 25 minutes under tracemalloc.

The view is in memory, as ``serve`` keeps it without ``--state-dir``; its SQLite pages are
reported as bytes per order.

The second part (``--kafka N``, needs a broker) sends N orders through the real command path
(producer, broker, consumer, view) and prints what the bookkeeping still holds afterwards.
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
import tracemalloc
import uuid
from collections import deque
from collections.abc import Callable

from order_system import (
    OrderCommands, OrderEvent, OrderProcessor, OrderStatus, Settings, create_topics, delete_topics,
)
from order_system.kafka.consumer import run_groups
from order_system.services.groups import runner_for
from order_system.kafka.producer import OrderProducer

CHECKPOINTS = (10_000, 100_000, 1_000_000)


Write = Callable[[str, int], None]


class OldBookkeeping:
    """What OrderCommands kept before: a lock and a written version per order, forever."""

    def __init__(self, view: OrderProcessor) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._written: dict[str, int] = {}

    def write(self, order_id: str, version: int) -> None:
        with self._guard:
            lock = self._locks.setdefault(order_id, threading.Lock())
        with lock:
            self._written[order_id] = version

    def tracked(self) -> int:
        return len(self._locks) + len(self._written)


class NewBookkeeping:
    """What OrderCommands does around each publish now (the publish itself is left out)."""

    def __init__(self, view: OrderProcessor) -> None:
        self.commands = OrderCommands(producer=None, processor=view)  # type: ignore[arg-type]  # never publishes

    def write(self, order_id: str, version: int) -> None:
        with self.commands._lock(order_id):
            self.commands.wait_until_processed(order_id)
            self.commands._wrote(order_id, version)

    def tracked(self) -> int:
        return sum(self.commands.tracked)


def python_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def view_bytes(view: OrderProcessor) -> int:
    """The SQLite pages of the view (in memory, as `serve` keeps it without --state-dir)."""
    pages = view.store._db.execute("PRAGMA page_count").fetchone()[0]
    return int(pages * view.store._db.execute("PRAGMA page_size").fetchone()[0])


WARM_UP_EVENTS = 50_000


def warm_up() -> None:
    """Fill pydantic-core's bounded cache of validated strings (16,384 entries) before measuring.

    It fills within the first ~40,000 events whatever the bookkeeping does and then stays the
    same size (about 0.6 MB here); measured from a cold start, it would look like growth.
    """
    for n in range(WARM_UP_EVENTS):
        OrderEvent.created(f"warm-{n}", "warm-up")


def run(name: str, bookkeeping: type[OldBookkeeping] | type[NewBookkeeping], orders: int, lag: int,
        feed_view: bool = True) -> list[tuple[int, int, int, int]]:
    """Feed ``orders`` creates; per checkpoint: (orders, python bytes, tracked entries, view bytes)."""
    view = OrderProcessor()  # in memory, like `serve` without --state-dir
    books = bookkeeping(view)
    behind: deque[OrderEvent] = deque()
    points = [c for c in CHECKPOINTS if c <= orders] or [orders]
    rows = []
    tracemalloc.start()
    warm_up()
    began = time.perf_counter()
    for n in range(1, orders + 1):
        event = OrderEvent.created(f"{n:012x}", f"customer-{n % 1000}")
        books.write(event.order_id, event.version)
        behind.append(event)
        if len(behind) > lag:
            done = behind.popleft()
            if feed_view:
                view.handle(done)
        if n in points:
            rows.append((n, python_bytes(), books.tracked(), view_bytes(view)))
            print(f"  {name:<4} {n:>9,} orders: python {rows[-1][1] / 1e6:8.2f} MB, tracked {rows[-1][2]:>9,}, "
                  f"{time.perf_counter() - began:6.1f} s", flush=True)
    tracemalloc.stop()
    view.store.close()
    return rows


def in_process(orders: int, lag: int) -> None:
    print(f"In-process: {orders:,} orders, the view {lag:,} events behind (tracemalloc; no broker)")
    baseline = run("old", OldBookkeeping, orders, lag, feed_view=False)  # it never reads the view
    candidate = run("new", NewBookkeeping, orders, lag)
    first_old, first_new = baseline[0][1], candidate[0][1]
    print("\n   orders    old MB  old/first   new MB  new/first  new/old   view bytes/order")
    for (n, old_b, _, _), (_, new_b, _, view_b) in zip(baseline, candidate):
        print(f"{n:>9,} {old_b / 1e6:9.2f} {old_b / first_old:9.2f}x {new_b / 1e6:8.2f} {new_b / first_new:9.2f}x "
              f"{new_b / old_b:8.3f}  {view_b / max(n - lag, 1):10.0f}")
    spread = [b / first_new for _, b, _, _ in candidate]
    verdict = "flat" if all(0.9 <= r <= 1.1 for r in spread) else "NOT flat"
    print(f"new bookkeeping: {min(spread):.3f}x to {max(spread):.3f}x of its first figure -> {verdict} (target 0.90-1.10)")
    print("view: the order-processor's SQLite pages (orders, history, effects) per processed order; "
          "SQLite allocates them outside the Python heap, so tracemalloc's figures exclude them")


def through_kafka(count: int) -> None:
    settings = Settings.from_env().with_topic(f"bench-memory-{uuid.uuid4().hex[:6]}")
    print(f"\nThrough Kafka at {settings.bootstrap_servers}: {count:,} orders created and paid")
    create_topics(settings)
    view = OrderProcessor()
    try:
        with OrderProducer(settings) as producer, run_groups(runner_for(view, settings)):
            commands = OrderCommands(producer, view)
            began = time.perf_counter()
            orders = [commands.create(f"customer-{n % 100}")[0] for n in range(count)]
            for event in orders:
                commands.advance(event.order_id, event.customer_id, OrderStatus.PAID)
            took = time.perf_counter() - began
            during = commands.tracked
            for event in orders:
                assert view.wait_for_version(event.order_id, 2, 60)
            commands.prune()
            print(f"  {2 * count:,} writes in {took:.1f} s; tracked right after the last write "
                  f"(locks, writes awaiting the view): {during}; once the view caught up: {commands.tracked}")
    finally:
        delete_topics(settings, list(settings.all_topics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--lag", type=int, default=1000, help="how many events the view runs behind")
    parser.add_argument("--kafka", type=int, default=2000, help="orders through the real broker (0: skip)")
    args = parser.parse_args()
    print(f"pid {os.getpid()}")
    in_process(args.orders, args.lag)
    if args.kafka:
        through_kafka(args.kafka)


if __name__ == "__main__":
    main()
