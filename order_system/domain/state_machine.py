"""The order state machine, the version policy and event sourcing: pure Python, no I/O.

An order's state is never stored on its own: it is what you get by applying its events, in
order, to nothing. ``rebuild`` does that for any sequence of events (say, a topic replayed
from offset 0), skipping redelivered duplicates and reporting conflicts, gaps and forbidden
steps. ``check_version`` is the one place that decides what an event's version means.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import MappingProxyType

from .errors import InvalidEvent, InvalidTransition
from .events import OrderEvent, OrderStatus
from .items import PricedLine
from .money import Money

S = OrderStatus
TRANSITIONS: Mapping[OrderStatus | None, frozenset[OrderStatus]] = MappingProxyType({
    None: frozenset({S.CREATED}),
    S.CREATED: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.SHIPPED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.CANCELLED: frozenset(),
})
TERMINAL = frozenset(status for status, nexts in TRANSITIONS.items() if status is not None and not nexts)
_ORDER = list(OrderStatus)

# Dead-letter reasons of the version policy.
VERSION_CONFLICT = "version-conflict"
VERSION_GAP = "version-gap"


def allowed_next(status: OrderStatus | None) -> frozenset[OrderStatus]:
    """The statuses an order in ``status`` may move to (``None``: no order yet)."""
    return TRANSITIONS[status]


def transition_table() -> list[dict[str, str]]:
    """Every allowed transition as rows ``{"from": ..., "to": ...}`` (``(new)`` for no order)."""
    return [
        {"from": "(new)" if source is None else source.value, "to": target.value}
        for source, targets in TRANSITIONS.items()
        for target in sorted(targets, key=_ORDER.index)
    ]


def check_transition(order_id: str, current: OrderStatus | None, requested: OrderStatus) -> None:
    """Raise ``InvalidTransition`` unless ``current`` may move to ``requested``."""
    if requested not in TRANSITIONS[current]:
        raise InvalidTransition(order_id, current, requested)


def check_version(event: OrderEvent, applied_id: uuid.UUID | None, current: int | None = None) -> bool:
    """The version policy, the same for every consumer, view and replay. True: go on with
    ``event``; False: it is a duplicate, skip it (and count it). Raises ``InvalidEvent`` (to
    dead-letter it).

    ``applied_id`` is the eventId of the event already applied at ``event.version`` for this
    order (None: none yet); ``current`` is the order's version (0: no order yet).

    1. Same version, same eventId: a duplicate (a redelivery or a resend), skipped.
    2. Same version, another eventId: ``version-conflict``; two writers claimed one version.
    3. A gap, ``event.version > current + 1``: ``version-gap``; the missing events have not
       been applied, so applying this one would make the state disagree with its history.
       It is not held back: once the missing events came, it can be replayed from the
       dead-letter topic.
    4. A late lower version: its version is already taken (rule 1 or 2). An order's applied
       versions are always 1, 2, ... ``current`` without holes, so there is no other case.

    ``Order`` checks rules 1 and 2 (``current=None``), then the state machine, then rules 3
    and 4, so a step that is impossible anyway is reported as ``invalid-transition``. Groups
    that keep no order state and let a retried event come later on purpose (notifications,
    analytics) check rules 1 and 2 only.
    """
    if applied_id is not None:
        if applied_id == event.event_id:
            return False
        raise InvalidEvent(
            f"order {event.order_id} v{event.version} is already event {applied_id}, not {event.event_id}",
            VERSION_CONFLICT,
        )
    if current is not None and event.version != current + 1:
        reason = VERSION_GAP if event.version > current + 1 else VERSION_CONFLICT
        raise InvalidEvent(f"order {event.order_id} is at v{current}; v{event.version} is not the next version "
                           f"(v{current + 1})", reason)
    return True


@dataclass(frozen=True)
class Order:
    """An order as its events made it."""

    order_id: str
    customer_id: str
    status: OrderStatus
    version: int
    history: tuple[OrderEvent, ...]

    @classmethod
    def start(cls, event: OrderEvent) -> Order:
        """A new order from its first event, which must be CREATED with version 1."""
        check_transition(event.order_id, None, event.status)
        check_version(event, None, 0)
        return cls(event.order_id, event.customer_id, event.status, event.version, (event,))

    def applied_id(self, version: int) -> uuid.UUID | None:
        """The eventId of the applied event with ``version``, or None."""
        return self.history[version - 1].event_id if 1 <= version <= len(self.history) else None

    def apply(self, event: OrderEvent) -> Order:
        """The order after ``event``; the same order (``is self``) when it is a duplicate.

        Raises ``InvalidEvent`` for another order or customer, or a version ``check_version``
        refuses, and ``InvalidTransition`` for a step the state machine forbids.
        """
        if event.order_id != self.order_id:
            raise InvalidEvent(f"event for order {event.order_id} applied to order {self.order_id}", "order-mismatch")
        if event.customer_id != self.customer_id:
            raise InvalidEvent(
                f"order {self.order_id} belongs to customer {self.customer_id}, not {event.customer_id}",
                "customer-mismatch",
            )
        if not check_version(event, self.applied_id(event.version)):  # rules 1 and 2
            return self
        check_transition(self.order_id, self.status, event.status)
        check_version(event, None, self.version)  # rules 3 and 4
        return type(self)(self.order_id, self.customer_id, event.status, event.version, (*self.history, event))

    @property
    def items(self) -> tuple[PricedLine, ...] | None:
        """The lines of the order, as its CREATED event fixed them (None: an order without
        items). Read from the history, not stored again: an order costs no more memory."""
        return self.history[0].items

    @property
    def total(self) -> Money | None:
        """What the order costs, the sum of its items (None without items)."""
        return self.history[0].total

    @property
    def created_at(self) -> datetime:
        """The timestamp of the order's first event."""
        return self.history[0].timestamp

    @property
    def updated_at(self) -> datetime:
        """The timestamp of the order's last event."""
        return self.history[-1].timestamp

    @property
    def is_terminal(self) -> bool:
        """Whether no further transition is possible (DELIVERED or CANCELLED)."""
        return self.status in TERMINAL


class Outcome(Enum):
    """What ``OrderBook.apply`` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class VersionGap:
    """An event of version ``got`` came when ``expected`` was next; it was refused."""

    order_id: str
    expected: int
    got: int


class OrderBook:
    """Orders kept in memory, built event by event. Not thread-safe: callers lock."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self.gaps: list[VersionGap] = []

    def apply(self, event: OrderEvent) -> Outcome:
        """Apply one event under ``check_version``'s policy; a duplicate changes nothing.

        Raises ``InvalidEvent`` (version conflict or gap, another customer) or
        ``InvalidTransition`` (forbidden step); the book is then unchanged.
        """
        current = self._orders.get(event.order_id)
        try:
            updated = current.apply(event) if current else Order.start(event)
        except InvalidEvent as exc:
            if exc.reason == VERSION_GAP:
                self.gaps.append(VersionGap(event.order_id, (current.version if current else 0) + 1, event.version))
            raise
        if updated is current:
            return Outcome.DUPLICATE
        self._orders[event.order_id] = updated
        return Outcome.APPLIED

    def get(self, order_id: str) -> Order | None:
        """The order, or ``None`` if no event of it was applied."""
        return self._orders.get(order_id)

    def orders(self) -> list[Order]:
        """All orders, in the order they were created."""
        return list(self._orders.values())

    def __len__(self) -> int:
        """The number of orders."""
        return len(self._orders)


@dataclass
class Rebuild:
    """What replaying a sequence of events produced."""

    orders: dict[str, Order]
    duplicates: list[OrderEvent] = field(default_factory=list)
    gaps: list[VersionGap] = field(default_factory=list)
    rejected: list[tuple[OrderEvent, str]] = field(default_factory=list)


def rebuild(events: Iterable[OrderEvent]) -> Rebuild:
    """Replay ``events`` in the given (partition) order into orders.

    Duplicates (an eventId already applied) are skipped and listed; events ``check_version``
    or the state machine refuses (conflicts, gaps, forbidden steps) are listed as rejected,
    gaps also in ``gaps``. Each order ends exactly as a consumer of the same events leaves it.
    """
    book = OrderBook()
    duplicates: list[OrderEvent] = []
    rejected: list[tuple[OrderEvent, str]] = []
    for event in events:
        try:
            if book.apply(event) is Outcome.DUPLICATE:
                duplicates.append(event)
        except (InvalidTransition, InvalidEvent) as exc:
            rejected.append((event, str(exc)))
    return Rebuild({o.order_id: o for o in book.orders()}, duplicates, book.gaps, rejected)


def rebuild_order(events: Iterable[OrderEvent], order_id: str) -> Order | None:
    """One order's state from a stream of events (other orders' events are ignored)."""
    return rebuild(e for e in events if e.order_id == order_id).orders.get(order_id)
