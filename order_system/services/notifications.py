"""``notification-service``: one notification per transition the order-processor accepted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..domain.events import OrderEvent, OrderStatus
from ..domain.state_machine import check_version
from ..domain.changelog import Effect
from ..kafka.records import Handler, Received, decode_accepted
from ..state.store import OrderStore

if TYPE_CHECKING:
    import pandas as pd


NOTIFICATION_TEXT: Mapping[OrderStatus, str] = {
    OrderStatus.CREATED: "We received your order {order_id}.",
    OrderStatus.PAID: "Payment for order {order_id} is confirmed.",
    OrderStatus.SHIPPED: "Order {order_id} is on its way.",
    OrderStatus.DELIVERED: "Order {order_id} was delivered. Enjoy!",
    OrderStatus.CANCELLED: "Order {order_id} was cancelled.",
}


class NotificationService:
    """``notification-service``: one notification per transition, kept in a log.

    It reads ``order-verdicts`` (``settings.verdicts_topic``), not ``order-events``: an event
    on ``order-events`` is only a request, which the order-processor may still reject (say the
    loser of two conflicting commands), and a customer must never hear of a change that did not
    happen. So it acts only on ``accepted`` verdicts (the event each one carries) and skips
    duplicate and rejected ones. The processor writes verdicts in its transactions and this
    group reads committed records only (librdkafka's default), so an aborted batch notifies
    nobody. Failed notifications go through the main topic's retry topics and dead-letter
    topic, as the verdict record itself (its ``original-topic`` header says so, and ``replay``
    sends it back to ``order-verdicts``).

    The log lives in its own store, so a redelivered verdict never notifies twice. It follows
    ``check_version``'s duplicate and conflict rules; a later version may come before an
    earlier one that is being retried (retry topics), so gaps are allowed here.
    """

    group_id = "notification-service"
    retry_style = "topics"
    decode = staticmethod(decode_accepted)  # a verdict record -> the accepted event, or None (skipped)

    def __init__(self, store: OrderStore | str | Path | None = None) -> None:
        self.store = store if isinstance(store, OrderStore) else OrderStore(store or ":memory:")

    def input_topic(self, settings: Settings) -> str:
        return settings.input_topic(self.group_id)  # settings.verdicts_topic

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
        import pandas as pd  # not at module level: the groups' processes start without it

        rows = [{"order_id": e["order_id"], "message": e["detail"]} for e in self.store.effects()]
        return pd.DataFrame(rows, columns=["order_id", "message"])

    def count(self) -> int:
        return self.store.effect_counts().get("notification", 0)
