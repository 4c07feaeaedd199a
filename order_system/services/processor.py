"""``order-processor``: the authority for order state, and its business steps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..domain.events import OrderEvent, OrderStatus
from ..kafka.spring_compat import assign_version
from ..domain.state_machine import Order
from ..domain.changelog import Effect
from ..state.store import OrderStore

if TYPE_CHECKING:
    from ..kafka.consumer import Handler, Received


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


