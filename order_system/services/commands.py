"""Commands that become events: create an order, pay, ship, deliver, cancel.

A command is checked against the order-processor's view before its event is published, one
order at a time, so two concurrent "pay" commands cannot both pass. The view is updated
asynchronously by the consumer; to read its own writes, a command first waits (with a
bound) until the view has processed the previous event this process wrote for that order.
The REST API and the notebook dashboard both use this class.

Memory stays bounded however many orders pass: an order's lock exists only while a command
for it runs or waits, and the version this process last wrote for an order is kept only until
the view has processed it (checked a few entries per publish). At most ``max_pending`` writes
may wait for the view at once; past that, commands answer ``StillProcessing`` until it catches up.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from ..local.broker import outage_cause
from ..domain.errors import NotYourOrder, PublishError, StillProcessing, UnknownOrder
from ..domain.events import OrderEvent, OrderStatus, new_order_id
from .groups import OrderProcessor
from ..kafka.outbox import Outbox
from ..kafka.producer import Delivery, OrderProducer
from ..domain.state_machine import check_transition

log = logging.getLogger("order_system.services.commands")

MAX_PENDING = 100_000  # writes not yet processed by the view that one process keeps track of
PRUNE_PER_WRITE = 4  # how many of the oldest tracked writes each publish checks against the view


class OrderCommands:
    """Turns commands into events, checked against the processor's view."""

    def __init__(self, producer: OrderProducer, processor: OrderProcessor, outbox: Outbox | None = None,
                 publish_timeout: float = 10.0, view_timeout: float = 10.0, max_pending: int = MAX_PENDING) -> None:
        self.producer, self.processor = producer, processor
        if outbox is not None and producer.outbox is None:  # the producer keeps (and orders) what fails
            producer.attach_outbox(outbox)
        self.publish_timeout, self.view_timeout, self.max_pending = publish_timeout, view_timeout, max_pending
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # order id -> [lock, holders and waiters], only while in use
        self._written: OrderedDict[str, int] = OrderedDict()  # order id -> version written, until processed

    @property
    def tracked(self) -> tuple[int, int]:
        """(orders with a lock in use, writes waiting for the view): both bounded, not per order seen."""
        with self._guard:
            return len(self._locks), len(self._written)

    @contextmanager
    def _lock(self, order_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(order_id, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[order_id]

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
        with self._guard:
            written = self._written.get(order_id, 0)
        if not written:
            return
        if not self.processor.wait_for_version(order_id, written, self.view_timeout):
            raise StillProcessing(order_id)
        self._settle(order_id, written, processed=True)

    def _publish(self, event: OrderEvent) -> Delivery:
        self._make_room(event.order_id)
        future = self.producer.publish(event)
        try:
            delivery = future.result(timeout=self.publish_timeout)
        except (PublishError, FutureTimeout) as exc:
            message = f"the Kafka broker did not acknowledge the event for order {event.order_id}"
            if cause := outage_cause(self.producer.settings):
                message += f": {cause}"
            if self.producer.outbox is not None:  # the producer keeps what it failed to deliver
                message += "; the event is kept in the outbox and will be sent when the broker is back"
                self._wrote(event.order_id, event.version)  # the next command waits until it is seen
            raise PublishError(message, order_id=event.order_id) from exc
        self._wrote(event.order_id, event.version)
        return delivery

    # ---- bookkeeping -------------------------------------------------------------------------

    def prune(self) -> None:
        """Check every tracked write against the view once; forget those it has processed."""
        self._prune(self.tracked[1])

    def _wrote(self, order_id: str, version: int) -> None:
        """Track a write until the view has it; forget a few the view has meanwhile processed."""
        with self._guard:
            self._written[order_id] = version
            self._written.move_to_end(order_id)
        self._prune(PRUNE_PER_WRITE)

    def _make_room(self, order_id: str) -> None:
        """Refuse a write while ``max_pending`` earlier writes still wait for the view."""
        if self.tracked[1] < self.max_pending:
            return
        self._prune(64)
        if self.tracked[1] >= self.max_pending:
            log.warning("%d writes are not processed by the view yet; refusing new commands", self.max_pending)
            raise StillProcessing(order_id)

    def _prune(self, checks: int) -> None:
        """Forget the oldest tracked writes the view has processed; the others go to the back."""
        for _ in range(checks):
            with self._guard:
                if not self._written:
                    return
                order_id, version = next(iter(self._written.items()))
            self._settle(order_id, version, processed=self.processor.version(order_id) >= version)

    def _settle(self, order_id: str, version: int, processed: bool) -> None:
        with self._guard:
            if self._written.get(order_id) != version:
                return  # written again meanwhile: that newer write is tracked
            if processed:
                del self._written[order_id]
            else:
                self._written.move_to_end(order_id)
