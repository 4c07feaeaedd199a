"""The three consumer groups of the tutorial, each with its own logic and its own state.

A group here is a plain object with a ``group_id`` and a ``handlers()`` table (status ->
handler). It knows nothing of Kafka: ``runner_for`` wires it to a ``ConsumerRunner``, so adding
a fourth group means writing one more small class, and no existing module changes.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from ..domain.events import OrderEvent, OrderStatus
from ..kafka.spring_compat import assign_version
from ..domain.state_machine import TERMINAL, Order, check_version
from ..state.store import Effect, OrderStore

if TYPE_CHECKING:
    from ..config import Settings
    from ..kafka.consumer import ConsumerRunner, Received
    from ..kafka.retry import FailurePolicy

Handler = Callable[[OrderEvent, "Received"], "str | None"]


class Group(Protocol):
    """What a consumer group contributes: its id and one handler per status."""

    group_id: str

    def handlers(self) -> Mapping[OrderStatus, Handler]: ...


# ---- order-processor ------------------------------------------------------------------

BusinessStep = Callable[[OrderEvent, "Order | None"], list[Effect]]
MAX_DECISIONS = 5  # times the processor decides again when the store changed under it


def reserve_inventory(event: OrderEvent, order: Order | None) -> list[Effect]:
    return [Effect("inventory-checked", "in stock"), Effect("inventory-reserved", f"1 unit for {event.order_id}")]


def prepare_shipping(event: OrderEvent, order: Order | None) -> list[Effect]:
    return [Effect("shipping-prepared", f"parcel for {event.customer_id}")]


def start_tracking(event: OrderEvent, order: Order | None) -> list[Effect]:
    return [Effect("tracking-started", f"TRK-{event.order_id.upper()}")]


def complete_order(event: OrderEvent, order: Order | None) -> list[Effect]:
    return [Effect("order-completed", f"delivered to {event.customer_id}")]


def restore_and_refund(event: OrderEvent, order: Order | None) -> list[Effect]:
    effects = [Effect("inventory-restored", f"1 unit from {event.order_id}")]
    if order is not None and order.status is OrderStatus.PAID:
        effects.append(Effect("payment-refunded", f"refund to {event.customer_id}"))
    return effects


class OrderProcessor:
    """``order-processor``: the authority for order state.

    Every event is checked against the version policy (``check_version``: a duplicate is
    skipped and counted, a conflict or gap raises ``InvalidEvent``) and the state machine (a
    forbidden transition raises ``InvalidTransition``), both for the failure policy to
    dead-letter; then its business step runs with simulated services whose side effects are
    recorded in the store in the same transaction as the new state. So the orders row, the
    history (and GET) and the side effects always agree.
    """

    group_id = "order-processor"
    retry_style = "in-place"  # a retried PAID must not let SHIPPED overtake it (see retry.py)

    steps: Mapping[OrderStatus, tuple[BusinessStep, str]] = {
        OrderStatus.CREATED: (reserve_inventory, "Order created; inventory reserved, awaiting payment"),
        OrderStatus.PAID: (prepare_shipping, "Payment received; preparing the shipment"),
        OrderStatus.SHIPPED: (start_tracking, "Shipped; delivery tracking started"),
        OrderStatus.DELIVERED: (complete_order, "Delivered; order complete"),
        OrderStatus.CANCELLED: (restore_and_refund, "Cancelled; inventory restored"),
    }

    def __init__(self, store: OrderStore | str | Path | None = None) -> None:
        self.store = store if isinstance(store, OrderStore) else OrderStore(store or ":memory:")
        self.duplicates = 0  # redelivered or resent events skipped
        self._changed = threading.Condition()

    def handlers(self) -> Mapping[OrderStatus, Handler]:
        return {status: self.handle for status in self.steps}

    def handle(self, event: OrderEvent, received: Received | None = None) -> str:
        event = assign_version(event, self.store.history)  # a Spring event gets its version here
        order_id = event.order_id
        for _ in range(MAX_DECISIONS):
            current = self.store.get(order_id)
            updated = current.apply(event) if current is not None else Order.start(event)  # may raise
            if updated is current:
                with self._changed:
                    self.duplicates += 1
                return f"duplicate of {order_id} v{event.version} ({event.status.value}); skipped"
            step, summary = self.steps[event.status]
            effects = step(event, current)
            if self.store.record(event, effects, previous=current.version if current else 0):
                break
            # the partition's previous owner recorded this order meanwhile: decide again
        else:
            raise RuntimeError(f"order {order_id} kept changing in the store while v{event.version} was handled")
        with self._changed:
            self._changed.notify_all()
        return f"[{self.group_id}] {summary} - order {order_id} is {updated.status.value}"

    # ---- views for the API, notebooks and tests --------------------------------------

    def get(self, order_id: str) -> Order | None:
        return self.store.get(order_id)

    def version(self, order_id: str) -> int:
        return self.store.version(order_id)

    def statuses(self) -> dict[str, OrderStatus]:
        return self.store.statuses()

    def wait_for_version(self, order_id: str, version: int, timeout: float) -> bool:
        """Block until the order reached ``version`` (read-your-writes), at most ``timeout`` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.store.version(order_id) >= version, timeout=timeout)

    def effects_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.store.effects(), columns=["event_id", "order_id", "kind", "detail"])

    def orders_frame(self) -> pd.DataFrame:
        columns = ["order_id", "customer_id", "status", "version", "created_at", "updated_at"]
        return pd.DataFrame(self.store.summaries(limit=1_000_000), columns=columns)


# ---- notification-service ---------------------------------------------------------------

NOTIFICATION_TEXT: Mapping[OrderStatus, str] = {
    OrderStatus.CREATED: "We received your order {order_id}.",
    OrderStatus.PAID: "Payment for order {order_id} is confirmed.",
    OrderStatus.SHIPPED: "Order {order_id} is on its way.",
    OrderStatus.DELIVERED: "Order {order_id} was delivered. Enjoy!",
    OrderStatus.CANCELLED: "Order {order_id} was cancelled.",
}


class NotificationService:
    """``notification-service``: one notification per transition, kept in a log.

    The log lives in its own store, so a redelivered event never notifies twice. It follows
    ``check_version``'s duplicate and conflict rules; a later version may come before an
    earlier one that is being retried (retry topics), so gaps are allowed here.
    """

    group_id = "notification-service"
    retry_style = "topics"

    def __init__(self, store: OrderStore | str | Path | None = None) -> None:
        self.store = store if isinstance(store, OrderStore) else OrderStore(store or ":memory:")

    def handlers(self) -> Mapping[OrderStatus, Handler]:
        return {status: self.notify for status in NOTIFICATION_TEXT}

    def notify(self, event: OrderEvent, received: Received | None = None) -> str:
        text = NOTIFICATION_TEXT[event.status].format(order_id=event.order_id)
        effect = Effect("notification", f"to {event.customer_id}: {text}")
        # raises InvalidEvent for a conflict; loops only if another consumer recorded meanwhile
        while check_version(event, self.store.event_id(event.order_id, event.version)):
            if self.store.record(event, [effect]):
                return f"[{self.group_id}] notified {event.customer_id}: {text}"
        return f"[{self.group_id}] already notified for {event.order_id} v{event.version}; skipped"

    def log(self) -> pd.DataFrame:
        """The notification log: order id and message, in the order they were sent."""
        rows = [{"order_id": e["order_id"], "message": e["detail"]} for e in self.store.effects()]
        return pd.DataFrame(rows, columns=["order_id", "message"])

    def count(self) -> int:
        return self.store.effect_counts().get("notification", 0)


# ---- analytics-service ----------------------------------------------------------------------


class AnalyticsService:
    """``analytics-service``: counts per status, orders per customer, time spent in each state.

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
        with self._lock:
            now = Counter(status.value for status, _ in self._current.values())
            rows = [
                {"status": s.value, "events": self._events_per_status.get(s.value, 0), "orders_now": now.get(s.value, 0)}
                for s in OrderStatus
            ]
        return pd.DataFrame(rows).set_index("status")

    def orders_per_customer(self) -> pd.DataFrame:
        with self._lock:
            per: Counter[str] = Counter(self._customer.values())
        frame = pd.DataFrame(sorted(per.items()), columns=["customer_id", "orders"])
        return frame.set_index("customer_id")

    def time_in_state(self) -> pd.DataFrame:
        """Seconds spent in each non-terminal state before the next transition."""
        with self._lock:
            rows = [
                {"status": s.value, "transitions": len(d), "mean_s": sum(d) / len(d), "max_s": max(d)}
                for s in OrderStatus if s not in TERMINAL and (d := self._durations.get(s.value))
            ]
        return pd.DataFrame(rows, columns=["status", "transitions", "mean_s", "max_s"]).set_index("status")


# ---- wiring -----------------------------------------------------------------------------------


def runner_for(group: Group, settings: Settings, *, failure_policy: FailurePolicy | None = None,
               **options: Any) -> ConsumerRunner:
    """A ``ConsumerRunner`` that feeds ``group``'s handlers from the settings' topic.

    Failures are handled in the style the group names in ``retry_style`` (retry topics when
    it names none), unless ``failure_policy`` is given.
    """
    from ..kafka.consumer import ConsumerRunner
    from ..kafka.retry import policy_for

    policy = failure_policy or policy_for(getattr(group, "retry_style", "topics"))
    return ConsumerRunner(settings, group.group_id, group.handlers(), failure_policy=policy, **options)


def standard_groups(state_dir: str | Path | None = None) -> tuple[OrderProcessor, NotificationService, AnalyticsService]:
    """The tutorial's three groups; with ``state_dir`` their stores are files there."""
    if state_dir is None:
        return OrderProcessor(), NotificationService(), AnalyticsService()
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return (
        OrderProcessor(folder / "order-processor.db"),
        NotificationService(folder / "notification-service.db"),
        AnalyticsService(),
    )
