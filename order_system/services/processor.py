"""``order-processor``: the authority for order state, and its business steps.

Its decisions are pure: ``process`` turns a batch of input records into the records to write
(a verdict per record; for an accepted event its effects; for a rejected one a dead letter;
each changed order's state once, as the batch leaves it) and the in-memory changes to apply
once the batch's transaction committed. The Kafka side (the transaction, restoring state on assignment) is wired in
``bootstrap.py`` with ``kafka/transactions.py``; nothing here talks to Kafka.

State lives in memory per input partition: ``restore`` loads a partition's orders (read from
``order-state`` when it is assigned), ``forget`` drops them when it goes. Within a batch,
changes are kept aside (copy-on-write) and applied by ``Batch.on_commit``, so readers see only
committed state and an aborted batch leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from ..domain.changelog import MAX_DETAIL, Effect, Outcome, Verdict, effect_to_json, order_to_json, verdict_to_json
from ..domain.errors import ConfigError, InvalidEvent, InvalidTransition
from ..domain.events import OrderEvent, OrderStatus
from ..domain.state_machine import Order
from ..kafka.spring_compat import assign_version

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Settings
    from ..kafka.consumer import Received
    from ..kafka.batches import Batch

BusinessStep = Callable[[OrderEvent, "Order | None"], list[Effect]]
INSTANCE_ENV = "ORDER_SYSTEM_INSTANCE_ID"
INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")  # also fits a transactional id and a client id
MAX_EFFECTS_KEPT = 20_000  # effects_frame() shows the most recent ones this object committed (all: order-effects)
EFFECT_COLUMNS = ["event_id", "order_id", "kind", "detail"]
log = logging.getLogger("order_system.services.processor")


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


def valid_instance_id(text: str) -> str:
    """``text`` if it is 1 to 100 letters, digits, '.', '_' or '-', else ``ConfigError``."""
    if not INSTANCE_ID.fullmatch(text):
        raise ConfigError(f"instance id {text[:100]!r}: use 1 to 100 letters, digits, '.', '_' or '-'")
    return text


def default_instance_id(env: Mapping[str, str] | None = None, port: int | None = None) -> str:
    """``ORDER_SYSTEM_INSTANCE_ID``, else the host name (with ``port``: ``<host>-<port>``, so two
    ``serve`` processes on one machine differ): stable across restarts of the same instance,
    which matters, since its transactional id is made from it."""
    given = ((os.environ if env is None else env).get(INSTANCE_ENV) or "").strip()
    if given:
        return valid_instance_id(given)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"
    return host if port is None else f"{host}-{port}"


class _Decision(NamedTuple):
    """What one record came to: its outcome about ``event`` (with its assigned version), and for
    an accepted event the new order and effects; for a rejected one why."""

    outcome: Outcome
    event: OrderEvent
    order: Order | None = None
    effects: tuple[Effect, ...] | list[Effect] = ()
    reason: str | None = None
    detail: str | None = None
    error: Exception | None = None
    attempts: int = 1


class OrderProcessor:
    """``order-processor``: the authority for order state.

    Every event is checked against the version policy (``check_version``: a duplicate is
    skipped and counted, a conflict or gap is rejected) and the state machine (a forbidden
    transition is rejected); a rejected record is dead-lettered. An accepted event's business
    step runs with simulated services; a step that fails is tried again in place (``attempts``
    in all, ``backoff`` seconds doubling between), then rejected as ``handler-error``. The
    retries run while the batch is decided, before its transaction begins, so they never count
    against ``transaction.timeout.ms``; the transaction stays open only to write and commit.
    """

    group_id = "order-processor"
    retry_style = "in-place"  # a retried PAID must not let SHIPPED overtake it

    steps: Mapping[OrderStatus, tuple[BusinessStep, str]] = {
        OrderStatus.CREATED: (reserve_inventory, "Order created; inventory reserved, awaiting payment"),
        OrderStatus.PAID: (prepare_shipping, "Payment received; preparing the shipment"),
        OrderStatus.SHIPPED: (start_tracking, "Shipped; delivery tracking started"),
        OrderStatus.DELIVERED: (complete_order, "Delivered; order complete"),
        OrderStatus.CANCELLED: (restore_and_refund, "Cancelled; inventory restored"),
    }

    def __init__(self, *, instance_id: str | None = None, attempts: int = 3, backoff: float = 0.1) -> None:
        instance = valid_instance_id(instance_id) if instance_id is not None else default_instance_id()
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.instance_id = instance
        self.attempts, self.backoff = attempts, backoff
        self.duplicates = 0  # redelivered or resent events skipped
        self._orders: dict[int, dict[str, Order]] = {}  # partition -> order id -> committed order
        self._effects: deque[tuple[str, str, str, str]] = deque(maxlen=MAX_EFFECTS_KEPT)  # EFFECT_COLUMNS
        self._effect_kinds: Counter[str] = Counter()  # every effect committed, by kind (not only those kept)
        self._changed = threading.Condition()

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"

    # ---- deciding -------------------------------------------------------------------------

    def process(self, records: list[Received], settings: Settings, sleep: Callable[[float], None],
                require_key: bool = True) -> Batch:
        """Decide about every record of a batch; nothing changes until ``on_commit`` is called."""
        from ..kafka.dead_letters import MAX_KEY_KEPT
        from ..kafka.records import Stopping, decode
        from ..kafka.batches import Batch, Output

        verdicts, effects_topic, zone = settings.verdicts_topic, settings.effects_topic, settings.local_timezone
        batch = Batch(handled=len(records))
        outputs = batch.outputs
        pending: dict[tuple[int, str], Order] = {}
        effects: list[tuple[str, str, str, str]] = []
        duplicates = 0
        for received in records:
            partition, offset, raw_key = received.partition, received.offset, received.raw_key
            key = raw_key[:MAX_KEY_KEPT] if raw_key is not None else None
            try:
                event = decode(received, require_key, zone)
            except InvalidEvent as exc:
                outputs.append(Output(verdicts, partition, key, Verdict(
                    Outcome.REJECTED, partition, offset, reason=exc.reason, detail=str(exc)[:MAX_DETAIL]).to_json()))
                self._reject(batch, settings, received, exc, exc.reason, 1)
                continue
            try:
                decision = self._decide(event, partition, offset, pending, sleep)
            except Stopping:
                raise
            except Exception as exc:  # a bug or an input nobody foresaw: dead-letter, never stall
                log.exception("[%s] unexpected error with partition %d offset %d", self.group_id, partition, offset)
                failure = InvalidEvent(f"internal error: {type(exc).__name__}: {exc}"[:1000], "internal-error")
                decision = _Decision(Outcome.REJECTED, event, reason=failure.reason, detail=str(failure), error=failure)
            outcome, event = decision.outcome, decision.event
            outputs.append(Output(verdicts, partition, key, verdict_to_json(outcome, event, partition, offset,
                                                                            decision.reason, decision.detail)))
            batch.retried += decision.attempts - 1
            if outcome is Outcome.ACCEPTED:
                order = decision.order
                assert order is not None
                pending[(partition, order.order_id)] = order
                order_key = order.order_id.encode()
                for effect in decision.effects:
                    outputs.append(Output(effects_topic, partition, order_key, effect_to_json(event, effect)))
                    effects.append((event.id_text, order.order_id, effect.kind, effect.detail))
            elif outcome is Outcome.DUPLICATE:
                duplicates += 1
            else:
                assert decision.error is not None and decision.reason is not None
                self._reject(batch, settings, received, decision.error, decision.reason, decision.attempts)

        # each changed order's state once per batch, as it is at the end of the batch (the
        # changelog is compacted: an intermediate state would be overwritten anyway)
        state_topic = settings.state_topic
        for (partition, order_id), order in pending.items():
            outputs.append(Output(state_topic, partition, order_id.encode(), order_to_json(order)))

        batch.on_commit = partial(self._commit, pending, effects, duplicates)
        return batch

    def _commit(self, orders: Mapping[tuple[int, str], Order], effects: list[tuple[str, str, str, str]],
                duplicates: int) -> None:
        """Apply what was decided, once it is committed (a batch's transaction, or ``handle``)."""
        with self._changed:
            for (partition, order_id), order in orders.items():
                self._orders.setdefault(partition, {})[order_id] = order
            self._effects.extend(effects)
            self._effect_kinds.update(kind for _, _, kind, _ in effects)
            self.duplicates += duplicates
            self._changed.notify_all()

    def _reject(self, batch: Batch, settings: Settings, received: Received, error: Exception, reason: str,
                attempts: int) -> None:
        """Add the dead letter of a rejected record to the batch."""
        from ..kafka.dead_letters import cut, dead_letter
        from ..kafka.batches import Output

        letter = dead_letter(settings, received, error, group=self.group_id, attempts=attempts, reason=reason)
        # librdkafka's default message.max.bytes, less room for the record's framing
        if letter.size > int(settings.client_options.get("message.max.bytes", 1_000_000)) - 10_000:
            letter = cut(letter)
        batch.outputs.append(Output(letter.topic, received.partition, letter.key, letter.value, letter.headers))
        batch.dead_lettered += 1
        batch.failures.append((received, error))
        log.warning("[%s] rejected partition %d offset %d (%s): %s", self.group_id, received.partition,
                    received.offset, reason, error)

    def _decide(self, event: OrderEvent, partition: int, offset: int, pending: dict[tuple[int, str], Order],
                sleep: Callable[[float], None]) -> _Decision:
        """What ``event`` (at ``offset`` of ``partition``) comes to, given the batch's ``pending`` orders."""
        committed = self._orders.get(partition) or {}

        def current_of(order_id: str) -> Order | None:
            found = pending.get((partition, order_id))
            return found if found is not None else committed.get(order_id)

        event = assign_version(event, lambda order_id: (o.history if (o := current_of(order_id)) else ()))
        current = current_of(event.order_id)
        try:
            updated = current.apply(event) if current is not None else Order.start(event)
        except (InvalidEvent, InvalidTransition) as exc:
            reason = exc.reason if isinstance(exc, InvalidEvent) else "invalid-transition"
            return _Decision(Outcome.REJECTED, event, reason=reason, detail=str(exc), error=exc)
        if updated is current:
            return _Decision(Outcome.DUPLICATE, event)
        step = self.steps[event.status][0]
        for attempt in range(1, self.attempts + 1):
            try:
                return _Decision(Outcome.ACCEPTED, event, updated, step(event, current), attempts=attempt)
            except Exception as exc:  # a failing service: try again in place, then reject
                if attempt == self.attempts:
                    return _Decision(Outcome.REJECTED, event, reason="handler-error",
                                     detail=f"{type(exc).__name__}: {exc}", error=exc, attempts=attempt)
                log.warning("[%s] attempt %d of %d failed for order %s: %s", self.group_id, attempt,
                            self.attempts, event.order_id, exc)
                sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def handle(self, event: OrderEvent, received: Received | None = None) -> str:
        """Decide about one event and apply it at once, without Kafka (for tests and notebooks).

        Raises ``InvalidEvent`` / ``InvalidTransition`` for a rejected event, like the consumer
        used to; a duplicate changes nothing."""
        partition = received.partition if received is not None else 0
        decision = self._decide(event, partition, received.offset if received is not None else -1, {},
                                lambda seconds: None)
        if decision.outcome is Outcome.REJECTED:
            assert decision.error is not None
            raise decision.error
        if decision.outcome is Outcome.DUPLICATE:
            self._commit({}, [], 1)
            return f"duplicate of {event.order_id} v{decision.event.version} ({event.status.value}); skipped"
        order = decision.order
        assert order is not None
        self._commit({(partition, order.order_id): order},
                     [(event.id_text, order.order_id, e.kind, e.detail) for e in decision.effects], 0)
        return f"[{self.group_id}] {self.steps[event.status][1]} - order {order.order_id} is {order.status.value}"

    # ---- partitions -----------------------------------------------------------------------

    def restore(self, orders_by_partition: Mapping[int, Mapping[str, Order]]) -> None:
        """Take over partitions with the orders their changelog holds (replacing what was kept)."""
        with self._changed:
            for partition, orders in orders_by_partition.items():
                self._orders[partition] = dict(orders)
            self._changed.notify_all()

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this instance no longer owns."""
        with self._changed:
            for partition in partitions:
                self._orders.pop(partition, None)
            self._changed.notify_all()

    @property
    def partitions(self) -> list[int]:
        return sorted(self._orders)

    # ---- views for the API, notebooks and tests (committed state of owned partitions) ------

    def get(self, order_id: str) -> Order | None:
        with self._changed:
            found = [order for orders in self._orders.values() if (order := orders.get(order_id)) is not None]
        return max(found, key=lambda order: order.version, default=None)

    def version(self, order_id: str) -> int:
        order = self.get(order_id)
        return order.version if order is not None else 0

    def orders(self) -> list[Order]:
        with self._changed:
            return [order for orders in self._orders.values() for order in orders.values()]

    def count(self) -> int:
        with self._changed:
            return sum(len(orders) for orders in self._orders.values())

    def statuses(self) -> dict[str, OrderStatus]:
        return {order.order_id: order.status for order in self.orders()}

    def wait_for_version(self, order_id: str, version: int, timeout: float) -> bool:
        """Block until the order reached ``version`` (read-your-writes), at most ``timeout`` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.version(order_id) >= version, timeout=timeout)

    def effects_frame(self) -> pd.DataFrame:
        import pandas as pd  # not at module level: the groups' processes start without it

        with self._changed:
            rows = list(self._effects)
        return pd.DataFrame(rows, columns=EFFECT_COLUMNS)

    def effect_counts(self) -> dict[str, int]:
        with self._changed:
            return dict(sorted(self._effect_kinds.items()))

    def orders_frame(self) -> pd.DataFrame:
        import pandas as pd  # not at module level: the groups' processes start without it

        columns = ["order_id", "customer_id", "status", "version", "created_at", "updated_at"]
        rows = [{"order_id": o.order_id, "customer_id": o.customer_id, "status": o.status.value,
                 "version": o.version, "created_at": o.created_at.isoformat(), "updated_at": o.updated_at.isoformat()}
                for o in self.orders()]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.sort_values(["created_at", "order_id"], ascending=[False, True], ignore_index=True)
