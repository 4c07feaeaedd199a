"""Commands that become events: create an order, pay, ship, deliver, cancel.

A command reads the order from the ``OrderView`` (every order of ``order-state``), after
``catch_up``, so it sees whatever any instance's command committed before it; then it publishes
the order's next version and WAITS FOR THE ORDER-PROCESSOR'S VERDICT on that very event. Two
instances may both pass the check for one order (pay on one, cancel on the other); the
processor accepts the first version it reads and rejects the other as a version conflict, so
exactly one client gets 202 and the other 409. A 2xx is given only for an accepted event.

Within one process, commands for one order take turns (a lock per order, held only while a
command for it runs), so they never race each other. Every wait is bounded: when one runs out
the command answers ``StillProcessing`` (the API's 503 with ``Retry-After``). The REST API and
the notebook dashboard both use this class.

**Idempotency keys.** A command given a ``key`` (the HTTP ``Idempotency-Key`` header) makes the
same ids every time it is repeated: ``keyed_order_id`` for a create, ``keyed_event_id`` for the
event. A repeat of a command whose event is already applied answers as the first did, without
publishing; a repeat of one still on its way publishes the same event again, which the
order-processor skips as a duplicate of the first (same version, same eventId). So a client that
got a 503, or no answer at all, repeats the command with its key and learns the real outcome: it
never races its own earlier request, and the command happens at most once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from ..domain.changelog import Outcome
from ..domain.errors import (CommandRejected, IdempotencyKeyReused, NotYourOrder, PublishError, StillProcessing,
                             UnknownOrder)
from ..domain.events import OrderEvent, OrderStatus, keyed_event_id, keyed_order_id, new_order_id
from ..domain.state_machine import Order, check_transition
from ..kafka.ordering import OrderedProducer
from ..kafka.producer import Delivery, OrderProducer
from ..kafka.reachability import outage_cause
from ..state.view import OrderView
from .stages import stage

log = logging.getLogger("order_system.services.commands")


class OrderCommands:
    """Turns commands into events, checked against the view and confirmed by the processor.

    ``view_timeout`` bounds the wait for the view (and, for an order it does not know yet, for
    the order-processor to process what was published before); ``verdict_timeout`` bounds the
    wait for the verdict once the event was acknowledged.
    """

    def __init__(self, producer: OrderProducer, view: OrderView, publish_timeout: float = 10.0,
                 view_timeout: float = 10.0, verdict_timeout: float = 15.0) -> None:
        self.producer, self.view = producer, view
        # an OrderedProducer keeps (and orders) what the broker does not acknowledge
        self.kept = producer if isinstance(producer, OrderedProducer) else None
        self.publish_timeout, self.view_timeout, self.verdict_timeout = publish_timeout, view_timeout, verdict_timeout
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # order id -> [lock, holders and waiters], only while in use

    @property
    def tracked(self) -> tuple[int, int]:
        """(orders with a lock in use, commands waiting for a verdict): both bounded, not per order seen."""
        with self._guard:
            return len(self._locks), self.view.waiting

    @contextmanager
    def _lock(self, order_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(order_id, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with stage("lock"):
                entry[0].acquire()
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[order_id]

    # ---- reads -------------------------------------------------------------------------------

    def read(self, order_id: str) -> Order:
        """The order as committed before this call, on any instance; raises ``UnknownOrder``, or
        ``StillProcessing`` when the view or the processor did not catch up in time."""
        deadline = time.monotonic() + self.view_timeout
        with stage("view"):
            if not self.view.catch_up(order_id, self.view_timeout):
                raise StillProcessing(order_id)
        order = self.view.get(order_id)
        if order is not None:
            return order
        # maybe created but not processed yet: wait for the processor, then for the view
        with stage("processed"):
            if not self.view.wait_processed(order_id, _left(deadline)):
                raise StillProcessing(order_id)
        order = self.view.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order

    # ---- commands ----------------------------------------------------------------------------

    def create(self, customer_id: str, key: str | None = None) -> tuple[OrderEvent, Delivery]:
        """Publish a new order's first event: answered once acknowledged (a new id has no rival;
        with ``key``, a repeat publishes the same event again, a duplicate the processor skips)."""
        if key is None:
            event = OrderEvent.created(new_order_id(), customer_id)
        else:
            order_id = keyed_order_id(customer_id, key)
            event = OrderEvent.created(order_id, customer_id, event_id=keyed_event_id(order_id, key))
        with self._lock(event.order_id):
            return event, self._publish(event)

    def advance(self, order_id: str, customer_id: str, target: OrderStatus,
                key: str | None = None) -> tuple[OrderEvent, Delivery]:
        """Publish the order's next event and wait for the processor to accept it; raises
        ``UnknownOrder``, ``NotYourOrder``, ``InvalidTransition`` (checked on the view),
        ``CommandRejected`` (the processor refused the event), ``StillProcessing``, ``PublishError``
        or, for a ``key`` used before for another step of this order, ``IdempotencyKeyReused``."""
        event_id = keyed_event_id(order_id, key) if key is not None else None
        with self._lock(order_id):
            if self.kept and self.kept.holds(order_id):  # its last event waits in the outbox: no new version yet
                raise StillProcessing(order_id)
            order = self.read(order_id)
            if customer_id != order.customer_id:
                raise NotYourOrder(order_id, customer_id)
            applied = next((e for e in order.history if e.event_id == event_id), None) if event_id else None
            if applied is not None:  # a repeat of a command already applied: its answer again
                if applied.status is not target:
                    raise IdempotencyKeyReused(order_id, applied.status.value, target.value)
                where = Delivery(self.producer.topic, self.view.partition_of(order_id), None, applied.key(), applied)
                return applied, where
            check_transition(order_id, order.status, target)
            event = OrderEvent.for_status(target, order_id, customer_id, order.version + 1, event_id=event_id)
            waiting_on = str(event.event_id)
            self.view.expect(order_id, waiting_on)
            try:
                delivery = self._publish(event)
                with stage("verdict"):
                    verdict = self.view.verdict(waiting_on, self.verdict_timeout)
            finally:
                self.view.forget(waiting_on)
            if verdict is None:
                log.warning("no verdict on %s v%d within %.1fs", order_id, event.version, self.verdict_timeout)
                raise StillProcessing(order_id)
            if verdict.outcome is Outcome.REJECTED:
                raise CommandRejected(order_id, verdict.reason, verdict.detail)
            # accepted (or a duplicate of itself: applied already). Once the view shows it, its state
            # record's commit marker is written, so any instance's next catch_up includes it.
            with stage("shown"):
                shown = self.view.wait_for_version(order_id, event.version, self.view_timeout)
            if not shown:
                log.warning("%s v%d was accepted but the view did not show it within %.1fs",
                            order_id, event.version, self.view_timeout)
            return event, delivery

    def _publish(self, event: OrderEvent) -> Delivery:
        future = self.producer.publish(event)
        try:
            with stage("publish"):
                return future.result(timeout=self.publish_timeout)
        except (PublishError, FutureTimeout) as exc:
            message = f"the Kafka broker did not acknowledge the event for order {event.order_id}"
            if cause := outage_cause(self.producer.settings):
                message += f": {cause}"
            if self.kept is not None:  # the producer keeps what it failed to deliver
                message += "; the event is kept in the outbox and will be sent when the broker is back"
            raise PublishError(message, order_id=event.order_id) from exc


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
