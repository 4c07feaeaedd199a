"""Exact money: ``Money``, an amount in a currency. Pure Python, no I/O.

An amount is a ``decimal.Decimal`` with two decimal places, never a float: 0.1 + 0.2 is not
0.3 in binary floating point, and a price read as one can come back a cent off. On the wire an
amount is a JSON string such as ``"2.50"`` (a JSON number is read as a float by most JSON
libraries, so it is refused, as is a Python float); a Java reader maps it to a ``BigDecimal``.

The bounds (``docs/failures-and-versions.md``, "Events on the wire", lists them):

- an amount is 0.00 to ``MAX_AMOUNT`` (99,999,999.99), with at most two decimal places as
  written: ``"2.5"`` is 2.50, ``"2.505"`` and ``"2.500"`` are refused (nothing is rounded);
- a currency is three capital letters (the shape of an ISO 4217 code; the list itself is the
  catalog's business, not the wire's).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, WithJsonSchema

MAX_AMOUNT = Decimal("99999999.99")  # fits a Java long of cents and a SQL DECIMAL(10, 2)
CENTS = 2  # decimal places of every amount
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,7})(\.[0-9]{1,2})?$"  # 0 to MAX_AMOUNT, as the wire writes it
CURRENCY_PATTERN = r"^[A-Z]{3}$"
_AMOUNT = re.compile(AMOUNT_PATTERN)
_CENT = Decimal(1).scaleb(-CENTS)


def exact_amount(value: Any) -> Decimal:
    """``value`` (a string such as ``"2.50"`` or a ``Decimal``) as a Decimal with two places;
    ``ValueError`` naming the problem for a float, an int, too many places, a negative amount
    or one over ``MAX_AMOUNT``."""
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float, which is not exact: write the amount as a string such as \"2.50\"")
    if isinstance(value, str):
        if len(value) > 20 or not _AMOUNT.match(value):
            raise ValueError(f"{value[:20]!r} is not an amount: 0 to {MAX_AMOUNT} with at most {CENTS} decimal "
                             "places, written like \"2.50\"")
        return Decimal(value).quantize(_CENT)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite amount")
        if value.as_tuple().exponent < -CENTS:  # type: ignore[operator]  (finite: an int)
            raise ValueError(f"{value} has more than {CENTS} decimal places")
        if not 0 <= value <= MAX_AMOUNT:
            raise ValueError(f"{value} is not between 0 and {MAX_AMOUNT}")
        return value.quantize(_CENT)
    raise ValueError(f"an amount is a string such as \"2.50\", not {type(value).__name__}")


Amount = Annotated[Decimal, BeforeValidator(exact_amount), WithJsonSchema({
    "type": "string", "pattern": AMOUNT_PATTERN,
    "description": f"Exact, as a string: 0 to {MAX_AMOUNT} with at most {CENTS} decimal places, e.g. \"2.50\".",
})]
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]


class Money(BaseModel):
    """An exact amount in one currency, e.g. ``Money.of("2.50", "EUR")``; immutable.

    Unknown fields are ignored on read, like every object of the wire format."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    amount: Amount
    currency: Currency

    @classmethod
    def of(cls, amount: str | Decimal, currency: str) -> Money:
        return cls(amount=amount, currency=currency)  # type: ignore[arg-type]

    def times(self, quantity: int) -> Money:
        """This amount ``quantity`` times (``ValueError`` when that is over ``MAX_AMOUNT``)."""
        return Money(amount=self.amount * quantity, currency=self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

