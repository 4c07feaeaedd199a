"""``analytics-service``: counts and durations per status."""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ..domain.events import OrderEvent, OrderStatus
from ..domain.state_machine import TERMINAL, check_version
from ..kafka.records import Handler, Received

if TYPE_CHECKING:
    import pandas as pd


class AnalyticsService:
    """``analytics-service``: counts per status, orders per customer, time spent in each state.

    It reads ``order-events``, the requests themselves, not the processor's verdicts: it
    measures what customers asked for, so an event the processor later rejects is counted too.

    Follows ``check_version``'s duplicate and conflict rules (in memory), like notifications.
    """

    group_id = "analytics-service"
    retry_style = "topics"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], uuid.UUID] = {}  # (order id, version) -> eventId
        self._events_per_status: Counter[str] = Counter()
        self._current: dict[str, tuple[OrderStatus, datetime]] = {}
        self._customer: dict[str, str] = {}
        self._durations: defaultdict[str, list[float]] = defaultdict(list)

    def handlers(self) -> Mapping[OrderStatus, Handler]:
        return {status: self.observe for status in OrderStatus}

    def observe(self, event: OrderEvent, received: Received | None = None) -> str:
        key = (event.order_id, event.version)
        with self._lock:
            if not check_version(event, self._seen.get(key)):  # raises InvalidEvent for a conflict
                return f"[{self.group_id}] {event.order_id} v{event.version} already counted"
            self._seen[key] = event.event_id
            self._events_per_status[event.status.value] += 1
            self._customer[event.order_id] = event.customer_id
            previous = self._current.get(event.order_id)
            if previous is not None:
                seconds = (event.timestamp - previous[1]).total_seconds()
                self._durations[previous[0].value].append(max(seconds, 0.0))
            self._current[event.order_id] = (event.status, event.timestamp)
            total = sum(self._events_per_status.values())
        return f"[{self.group_id}] counted {event.status.value} ({total} events so far)"

    @property
    def events_seen(self) -> int:
        with self._lock:
            return len(self._seen)

    def status_counts(self) -> pd.DataFrame:
        """Per status: events seen and orders currently in it."""
        import pandas as pd  # not at module level: the groups' processes start without it

        with self._lock:
            now = Counter(status.value for status, _ in self._current.values())
            rows = [
                {"status": s.value, "events": self._events_per_status.get(s.value, 0),
                 "orders_now": now.get(s.value, 0)}
                for s in OrderStatus
            ]
        return pd.DataFrame(rows).set_index("status")

    def orders_per_customer(self) -> pd.DataFrame:
        import pandas as pd  # not at module level: the groups' processes start without it

        with self._lock:
            per: Counter[str] = Counter(self._customer.values())
        frame = pd.DataFrame(sorted(per.items()), columns=["customer_id", "orders"])
        return frame.set_index("customer_id")

    def time_in_state(self) -> pd.DataFrame:
        """Seconds spent in each non-terminal state before the next transition."""
        import pandas as pd  # not at module level: the groups' processes start without it

        with self._lock:
            rows = [
                {"status": s.value, "transitions": len(d), "mean_s": sum(d) / len(d), "max_s": max(d)}
                for s in OrderStatus if s not in TERMINAL and (d := self._durations.get(s.value))
            ]
        return pd.DataFrame(rows, columns=["status", "transitions", "mean_s", "max_s"]).set_index("status")
