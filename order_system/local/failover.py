"""Watching a failover: publish at a steady pace in a thread, then count what was acknowledged.

Notebook 08 uses these with ``LocalCluster``: kill a partition leader while ``SteadyPublisher`` runs,
chart acknowledgements per second across the kill, and prove every acknowledged event arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pandas as pd

from .broker import poll_until
from ..config import Settings
from ..domain.events import OrderEvent
from ..services.processor import OrderProcessor
from ..kafka.producer import Delivery, OrderProducer


class SteadyPublisher:
    """Publishes ``events`` (each order's in version order) at ``rate`` per second from a thread,
    recording when each was acknowledged (acks=all, idempotent: the producer retries onto a new leader)."""

    def __init__(self, settings: Settings, events: Sequence[OrderEvent], rate: float = 100.0) -> None:
        self.settings, self.events, self.rate = settings, list(events), rate
        self.acked: dict[str, float] = {}  # eventId -> monotonic time of its acknowledgement
        self.failed: dict[str, str] = {}  # eventId -> error
        self.started = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="steady-publisher", daemon=True)

    def start(self) -> SteadyPublisher:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def elapsed(self) -> float:
        """Seconds since the publisher started."""
        return time.monotonic() - self.started

    def _run(self) -> None:
        with OrderProducer(self.settings) as producer:
            for n, event in enumerate(self.events):
                producer.publish(event, on_delivery=lambda d, e, ev=event: self._record(ev, d, e))
                pause = self.started + (n + 1) / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the load, not waiting for a condition

    def _record(self, event: OrderEvent, delivery: Delivery | None, error: Exception | None) -> None:
        with self._lock:
            if error is None:
                self.acked[str(event.event_id)] = time.monotonic()
            else:
                self.failed[str(event.event_id)] = str(error)

    def wait_acked(self, count: int, timeout: float = 120.0) -> None:
        """Wait until ``count`` events were acknowledged (on librdkafka's thread: their count is polled)."""
        if not poll_until(lambda: len(self.acked) >= count, timeout, 0.05):
            raise TimeoutError(f"only {len(self.acked)} of {count} events acknowledged in {timeout:.0f}s")

    def join(self, timeout: float = 120.0) -> None:
        """Wait until every event was published and answered (acknowledged or failed)."""
        self._thread.join(timeout)
        if not poll_until(lambda: len(self.acked) + len(self.failed) >= len(self.events), timeout, 0.05):
            raise TimeoutError("the publisher's events were not all answered")

    def per_second(self) -> pd.Series:
        """Acknowledged events per second since the start."""
        seconds = pd.Series([int(t - self.started) for t in self.acked.values()], dtype="int64")
        counts = seconds.value_counts().sort_index()
        return counts.reindex(range(int(counts.index.max()) + 1), fill_value=0).rename("acknowledged per second")


def arrival_table(publisher: SteadyPublisher, processor: OrderProcessor) -> pd.DataFrame:
    """Acknowledged events against what the order-processor applied: nothing acknowledged is missing."""
    last = {event.order_id: event.status for event in publisher.events}  # each order's events in version order
    orders = {order_id: processor.get(order_id) for order_id in last}
    applied = {str(e.event_id) for order in orders.values() if order is not None for e in order.history}
    final = sum(order is not None and order.status == last[order_id] for order_id, order in orders.items())
    acked = set(publisher.acked)
    return pd.DataFrame({"count": {
        "events published": len(publisher.events),
        "acknowledged by the cluster (acks=all)": len(acked),
        "failed": len(publisher.failed),
        "applied by the order-processor": len(applied),
        "acknowledged but not applied": len(acked - applied),
        f"orders in their final state (of {len(orders)})": final,
    }})
