"""The order state machine and event sourcing: pure Python, no I/O.

An order's state is never stored on its own: it is what you get by applying its events, in
order, to nothing. ``rebuild`` does that for any sequence of events (say, a topic replayed
from offset 0), skipping redelivered duplicates and reporting gaps and forbidden steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from types import MappingProxyType

from .errors import InvalidEvent, InvalidTransition
from .events import OrderEvent, OrderStatus

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
        """A new order from its first event, which must be CREATED (a version above 1 is a gap)."""
        check_transition(event.order_id, None, event.status)
        return cls(event.order_id, event.customer_id, event.status, event.version, (event,))

    def apply(self, event: OrderEvent) -> Order:
        """The order after ``event``; raises if the event is for another order or forbidden."""
        if event.order_id != self.order_id:
            raise InvalidEvent(f"event for order {event.order_id} applied to order {self.order_id}", "order-mismatch")
        if event.customer_id != self.customer_id:
            raise InvalidEvent(
                f"order {self.order_id} belongs to customer {self.customer_id}, not {event.customer_id}",
                "customer-mismatch",
            )
        check_transition(self.order_id, self.status, event.status)
        return replace(self, status=event.status, version=event.version, history=(*self.history, event))

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
    """Events between ``expected`` and ``got`` never arrived (or arrived out of order)."""

    order_id: str
    expected: int
    got: int


class OrderBook:
    """Orders kept in memory, built event by event. Not thread-safe: callers lock."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._versions: dict[str, set[int]] = {}
        self.gaps: list[VersionGap] = []

    def apply(self, event: OrderEvent) -> Outcome:
        """Apply one event; a version of the order already applied is a duplicate and changes nothing.

        A late event of a lower version that was never applied is not a duplicate: it goes through
        the state machine (and is usually refused). Raises ``InvalidTransition`` (forbidden step)
        or ``InvalidEvent`` (another customer); the book is then unchanged.
        """
        seen = self._versions.setdefault(event.order_id, set())
        if event.version in seen:
            return Outcome.DUPLICATE
        current = self._orders.get(event.order_id)
        updated = current.apply(event) if current else Order.start(event)
        expected = (current.version if current else 0) + 1
        if event.version != expected:
            self.gaps.append(VersionGap(event.order_id, expected, event.version))
        self._orders[event.order_id] = updated
        seen.add(event.version)
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

    Duplicates (a version at or below the order's current one) and forbidden steps are
    skipped and listed; version gaps are listed and the event still applied.
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
