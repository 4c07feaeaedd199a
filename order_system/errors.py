"""The exception tree of order_system.

Every error this package raises on purpose derives from ``OrderSystemError`` and says what
to do next.

    OrderSystemError
    ├── ConfigError          a setting in the environment is unusable
    ├── BrokerError          the local broker cannot be fetched, started or reached
    ├── TopicError           a topic could not be created or checked
    ├── InvalidEvent         a payload is not a valid OrderEvent (also a ValueError)
    ├── InvalidTransition    the state machine forbids a status change
    └── PublishError         the broker did not acknowledge a published event
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
    """The broker did not acknowledge an event; the event is not lost (see the outbox)."""
