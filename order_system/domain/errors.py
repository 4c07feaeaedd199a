"""The exception tree of order_system.

Every error this package raises on purpose derives from ``OrderSystemError`` and says what
to do next.

    OrderSystemError
    ├── ConfigError          a setting in the environment is unusable
    ├── BrokerError          the local broker cannot be fetched, started or reached
    ├── TopicError           a topic could not be created or checked
    ├── InvalidEvent         a payload is not a valid OrderEvent (also a ValueError)
    ├── InvalidTransition    the state machine forbids a status change
    ├── UnknownOrder         a command names an order nobody created
    ├── NotYourOrder         a command's customer is not the order's customer
    ├── StillProcessing      the order's last write has not been processed yet
    ├── CommandRejected      the order-processor rejected the command's event (a conflict)
    ├── IdempotencyKeyReused an idempotency key already named another step of the order
    ├── PublishError         the broker did not acknowledge a published event
    └── GroupFailed          a consumer group's process of ``serve`` kept ending; serve stopped
"""

from __future__ import annotations


class OrderSystemError(Exception):
    """Base class of every error raised by order_system."""


class ConfigError(OrderSystemError, ValueError):
    """A setting read from the environment cannot be used."""


class BrokerError(OrderSystemError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class TopicError(OrderSystemError):
    """A topic could not be created or does not have the expected shape."""


class InvalidEvent(OrderSystemError, ValueError):
    """A payload is not a valid OrderEvent; the message names the field and the problem.

    ``reason`` is a short code (``empty``, ``not-json``, ``schema``, ``unknown-status``,
    ``customer-mismatch`` ...) that dead-letter headers carry.
    """

    def __init__(self, message: str, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidTransition(OrderSystemError):
    """The state machine forbids moving an order from one status to another."""

    def __init__(self, order_id: str, current: object, requested: object) -> None:
        self.order_id = order_id
        self.current = current
        self.requested = requested
        cur = getattr(current, "value", current) or "(no order yet)"
        req = getattr(requested, "value", requested)
        super().__init__(f"order {order_id}: cannot go from {cur} to {req}")


class PublishError(OrderSystemError):
    """The broker did not acknowledge an event; with an outbox, the event is kept there."""

    def __init__(self, message: str, order_id: str | None = None) -> None:
        super().__init__(message)
        self.order_id = order_id


class UnknownOrder(OrderSystemError, LookupError):
    """A command names an order that does not exist (in the order-processor's view)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} does not exist")
        self.order_id = order_id


class NotYourOrder(OrderSystemError):
    """A command's customer id is not the customer id of the order."""

    def __init__(self, order_id: str, customer_id: str) -> None:
        super().__init__(f"order {order_id} does not belong to customer {customer_id}")
        self.order_id = order_id


class StillProcessing(OrderSystemError):
    """The order's previous write was not processed within the wait; try again shortly."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} is still being processed; try again shortly")
        self.order_id = order_id


class CommandRejected(OrderSystemError):
    """The order-processor rejected the event a command published (another instance's command
    for the same order won, or the transition no longer holds); nothing was changed."""

    def __init__(self, order_id: str, reason: str | None, detail: str | None = None) -> None:
        super().__init__(f"order {order_id}: the order-processor rejected the command ({reason or 'rejected'})"
                         + (f": {detail}" if detail else ""))
        self.order_id, self.reason, self.detail = order_id, reason, detail


class IdempotencyKeyReused(OrderSystemError, ValueError):
    """A command's idempotency key already made another step of this order: a key names one
    command; send a new key for a new command."""

    def __init__(self, order_id: str, applied: str, requested: str) -> None:
        super().__init__(f"order {order_id}: this Idempotency-Key was already used for {applied}, not {requested}; "
                         "use a new key for a new command")
        self.order_id = order_id


class GroupFailed(OrderSystemError):
    """A consumer group's child process of ``order-system serve`` ended on its own again and again,
    so serve stopped rather than run without that group; the message says which and how."""
