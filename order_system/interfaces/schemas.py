"""The REST API's request and response models, and the bounds on what a request may carry.

The JSON is camelCase (``orderId``), as the tutorial's Spring application answers; Python code
uses snake_case. Every model refuses fields it does not know.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import Header, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..domain.events import OrderStatus

MAX_BODY_BYTES = 16 * 1024  # larger request bodies are refused with 413 before they are read in full
MAX_OFFSET = 1_000_000_000  # the largest `offset` of GET /api/orders (larger: 422)
MAX_LIMIT = 500
RETRY_AFTER_SECONDS = 1  # what a 503 (a bounded wait ran out, or the broker is away) suggests


class Action(str, Enum):
    """The transitions a POST /api/orders/{orderId}/{action} asks for."""

    pay = "pay"
    ship = "ship"
    deliver = "deliver"
    cancel = "cancel"


ACTIONS: dict[Action, OrderStatus] = {
    Action.pay: OrderStatus.PAID,
    Action.ship: OrderStatus.SHIPPED,
    Action.deliver: OrderStatus.DELIVERED,
    Action.cancel: OrderStatus.CANCELLED,
}
# 1 to 64 characters, at least one of them not whitespace (surrounding whitespace is stripped)
NOT_BLANK = r"\S"
CustomerId = Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK), AfterValidator(str.strip)]
OrderIdPath = Annotated[str, Path(min_length=1, max_length=64, description="The order's id")]
# 1 to 128 visible ASCII characters but the double quote, optionally in double quotes (an sf-string);
# the route gets the key without them
IDEMPOTENCY_KEY = r'^("[!#-~]{1,128}"|[!#-~]{1,128})$'
IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY,
    description="Names this command (the IETF httpapi draft's header): repeat the request with the same key "
                "after a 503, a timeout or a lost connection, and it answers the command's real outcome; the "
                "command happens at most once. 1 to 128 visible ASCII characters but the double quote, optionally in "
                "double quotes."), AfterValidator(lambda key: key and key.strip('"'))]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateOrder(_Camel):
    customer_id: CustomerId


class OrderAccepted(_Camel):
    order_id: str
    message: str
    status: OrderStatus
    partition: int
    offset: int | None = Field(description="null when the broker acknowledged a retried send it had "
                                            "already stored, without saying at which offset")


class ActionAccepted(OrderAccepted):
    version: int


class OrderResponse(_Camel):
    """One order as GET /api/orders/{orderId} answers it (the HTTP model; ``state.view.OrderView`` holds them all)."""

    order_id: str
    customer_id: str
    status: OrderStatus
    version: int
    history: list[dict[str, Any]]


class OrderSummary(_Camel):
    order_id: str
    customer_id: str
    status: OrderStatus
    version: int
    updated_at: str


class OrderPage(_Camel):
    orders: list[OrderSummary]
    limit: int
    offset: int
    count: int


class Health(_Camel):
    broker: str
    bootstrap: str
    outbox: int | None
    lag: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error answer: a message under ``error``, sometimes with details beside it."""

    model_config = ConfigDict(extra="allow")
    error: str
