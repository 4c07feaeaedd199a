"""What an order is for: its lines and their prices. Pure Python, no I/O.

- ``OrderLine``: ``{sku, quantity}``, what a customer asks for;
- ``PricedLine``: ``{sku, quantity, unitPrice}``, a line with the price fixed when the order
  was created (prices come from the catalog, never from the client);
- ``order_total``: the sum of a priced order's lines.

The rules (``docs/failures-and-versions.md``, "Events on the wire", lists them):

- a SKU is 1 to 32 characters: capital letters, digits, ``-`` and ``_``, starting with a
  letter or a digit (``ABC-123``). It is a record key and a URL path segment, so nothing
  else; lower case is refused, not folded, so that ``abc`` and ``ABC`` cannot be two stocks;
- a quantity is a whole number from 1 to ``MAX_QUANTITY`` (1,000), never ``"2"`` or ``2.0``;
- an order has 1 to ``MAX_LINES`` (50) lines, at most one per SKU: a SKU named twice is
  refused (not merged), so the line of a SKU is the one place its quantity is, and a stock
  keeper can name a reservation by (order, SKU);
- a priced order has one currency, and its total is at most ``money.MAX_AMOUNT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from .money import MAX_AMOUNT, Money

MAX_QUANTITY = 1000  # units of one SKU in one order
MAX_LINES = 50  # lines (SKUs) in one order
SKU_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{0,31}$"

Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]


class OrderLine(BaseModel):
    """``quantity`` units of ``sku``; immutable. Unknown fields are ignored on read."""

    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)

    sku: Sku
    quantity: Quantity


class PricedLine(OrderLine):
    """An order line with the unit price it was ordered at."""

    unit_price: Money

    @property
    def amount(self) -> Money:
        """What the line costs: quantity times unit price."""
        return self.unit_price.times(self.quantity)


Line = TypeVar("Line", bound=OrderLine)


def check_lines(lines: Sequence[Line]) -> Sequence[Line]:
    """``lines`` when they make an order: 1 to ``MAX_LINES``, one per SKU and, when priced, one
    currency and a total within bounds; ``ValueError`` naming the problem otherwise."""
    if not lines:
        raise ValueError("an order without items leaves `items` out; an empty list is refused")
    if len(lines) > MAX_LINES:
        raise ValueError(f"{len(lines)} lines is over the limit of {MAX_LINES} per order")
    seen: set[str] = set()
    for line in lines:
        if line.sku in seen:
            raise ValueError(f"SKU {line.sku} is named twice: give one line per SKU with its whole quantity")
        seen.add(line.sku)
    if isinstance(lines[0], PricedLine):
        order_total(lines)  # type: ignore[arg-type]  (raises when it cannot be)
    return lines


def order_total(lines: Sequence[PricedLine]) -> Money:
    """The sum of the lines' amounts (``ValueError`` when they mix currencies or the total is
    over ``money.MAX_AMOUNT``)."""
    currencies = sorted({line.unit_price.currency for line in lines})
    if len(currencies) != 1:
        raise ValueError(f"the lines mix currencies ({', '.join(currencies)}): an order has one currency")
    total = sum((line.unit_price.amount * line.quantity for line in lines), Decimal(0))
    if total > MAX_AMOUNT:
        raise ValueError(f"the total {total} {currencies[0]} is over the limit of {MAX_AMOUNT}")
    return Money(amount=total, currency=currencies[0])


def total_problems(lines: Sequence[PricedLine] | None, given: object) -> list[str]:
    """What is wrong with the ``total`` an event carries (``given``, parsed JSON; None when it
    has none) beside its ``lines``: an order with items carries their sum, one without none."""
    if lines is None:
        return [] if given is None else ["total: only an order with items has a total"]
    if given is None:
        return ["total: Field required (an order with items carries their total)"]
    try:
        total = Money.model_validate(given)
    except ValidationError as exc:
        return [f"{'.'.join(('total', *map(str, e['loc'])))}: {e['msg']}" for e in exc.errors()]
    expected = order_total(lines)
    return [] if total == expected else [f"total: {total} is not the sum of the items, {expected}"]
