"""Commands that become events: create an order, pay, ship, deliver, cancel.

A command is checked against the order-processor's view before its event is published, one
order at a time, so two concurrent "pay" commands cannot both pass. The view is updated
asynchronously by the consumer; to read its own writes, a command first waits (with a
bound) until the view has processed the previous event this process wrote for that order.
The REST API and the notebook dashboard both use this class.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout

from .broker import outage_cause
from .errors import NotYourOrder, PublishError, StillProcessing, UnknownOrder
from .events import OrderEvent, OrderStatus, new_order_id
from .groups import OrderProcessor
from .outbox import Outbox
from .producer import Delivery, OrderProducer
from .state_machine import check_transition


class OrderCommands:
    """Turns commands into events, checked against the processor's view."""

    def __init__(self, producer: OrderProducer, processor: OrderProcessor, outbox: Outbox | None = None,
                 publish_timeout: float = 10.0, view_timeout: float = 10.0) -> None:
        self.producer, self.processor, self.outbox = producer, processor, outbox
        if outbox is not None and producer.outbox is None:  # the producer keeps (and orders) what fails
            producer.attach_outbox(outbox)
        self.publish_timeout, self.view_timeout = publish_timeout, view_timeout
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._written: dict[str, int] = {}  # the last version this process wrote, per order

    def _lock(self, order_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(order_id, threading.Lock())

    def create(self, customer_id: str) -> tuple[OrderEvent, Delivery]:
        event = OrderEvent.created(new_order_id(), customer_id)
        with self._lock(event.order_id):
            return event, self._publish(event)

    def advance(self, order_id: str, customer_id: str, target: OrderStatus) -> tuple[OrderEvent, Delivery]:
        """Publish the order's next event; raises ``UnknownOrder``, ``NotYourOrder``,
        ``InvalidTransition``, ``StillProcessing`` or ``PublishError``."""
        with self._lock(order_id):
            if self.producer.holds(order_id):  # its last event waits in the outbox: no new version yet
                raise StillProcessing(order_id)
            self.wait_until_processed(order_id)
            order = self.processor.get(order_id)
            if order is None:
                raise UnknownOrder(order_id)
            if customer_id != order.customer_id:
                raise NotYourOrder(order_id, customer_id)
            check_transition(order_id, order.status, target)
            event = OrderEvent.for_status(target, order_id, customer_id, order.version + 1)
            return event, self._publish(event)

    def wait_until_processed(self, order_id: str) -> None:
        """Read-your-writes: wait until the view holds this process's last write of the order."""
        written = self._written.get(order_id, 0)
        if written and not self.processor.wait_for_version(order_id, written, self.view_timeout):
            raise StillProcessing(order_id)

    def _publish(self, event: OrderEvent) -> Delivery:
        future = self.producer.publish(event)
        try:
            delivery = future.result(timeout=self.publish_timeout)
        except (PublishError, FutureTimeout) as exc:
            message = f"the Kafka broker did not acknowledge the event for order {event.order_id}"
            if cause := outage_cause(self.producer.settings):
                message += f": {cause}"
            if self.producer.outbox is not None:  # the producer keeps what it failed to deliver
                message += "; the event is kept in the outbox and will be sent when the broker is back"
                self._written[event.order_id] = event.version  # the next command waits until it is seen
            raise PublishError(message, order_id=event.order_id) from exc
        self._written[event.order_id] = event.version
        return delivery
