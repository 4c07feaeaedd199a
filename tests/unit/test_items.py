"""Orders with items and money: exact amounts, order lines, priced events, the total checked on read."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from order_system.domain.changelog import order_from_json, order_to_json
from order_system.domain.errors import InvalidEvent
from order_system.domain.events import SCHEMA, OrderEvent, OrderStatus
from order_system.domain.items import MAX_LINES, MAX_QUANTITY, OrderLine, PricedLine, check_lines, order_total
from order_system.domain.money import MAX_AMOUNT, Money
from order_system.domain.state_machine import Order, rebuild


def priced(sku: str = "ABC-1", quantity: int = 2, amount: str = "2.50", currency: str = "EUR") -> PricedLine:
    return PricedLine(sku=sku, quantity=quantity, unit_price=Money.of(amount, currency))


def created(*lines: PricedLine, order_id: str = "o1") -> OrderEvent:
    return OrderEvent(order_id=order_id, customer_id="c1", status=OrderStatus.CREATED, version=1, items=lines)


# ---- money --------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "kept"), [("2.50", "2.50"), ("2.5", "2.50"), ("0", "0.00"), ("99999999.99", None),
                                             (Decimal("7"), "7.00"), (Decimal("0.10"), "0.10")])
def test_amounts_are_exact_decimals_with_two_places(given: object, kept: str | None) -> None:
    money = Money(amount=given, currency="EUR")  # type: ignore[arg-type]
    assert isinstance(money.amount, Decimal) and str(money.amount) == (kept or str(MAX_AMOUNT))
    assert json.loads(money.model_dump_json()) == {"amount": kept or str(MAX_AMOUNT), "currency": "EUR"}


@pytest.mark.parametrize(("amount", "named"), [
    (2.5, "is a float, which is not exact"),
    (0.1 + 0.2, "is a float"),
    (3, "not int"),
    (True, "not bool"),
    (None, "not NoneType"),
    ("2.505", "at most 2 decimal places"),
    ("2.500", "at most 2 decimal places"),  # as written: nothing is rounded
    (Decimal("2.505"), "more than 2 decimal places"),
    ("-1.00", "is not an amount"),
    (Decimal("-1"), "not between 0 and"),
    ("100000000.00", "is not an amount"),
    (Decimal("100000000"), "not between 0 and 99999999.99"),
    ("1e3", "is not an amount"),
    ("NaN", "is not an amount"),
    (Decimal("NaN"), "not a finite amount"),
    (" 2.50", "is not an amount"),
    ("2,50", "is not an amount"),
    ("9" * 5000, "is not an amount"),
])
def test_bad_amounts_are_refused_naming_the_problem(amount: object, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Money(amount=amount, currency="EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EU", "EURO", "€", "", 978, None])
def test_a_currency_is_three_capital_letters(currency: object) -> None:
    with pytest.raises(ValidationError, match="currency"):
        Money(amount="1.00", currency=currency)  # type: ignore[arg-type]


def test_money_multiplies_exactly() -> None:
    assert Money.of("0.10", "EUR").times(3) == Money.of("0.30", "EUR")  # 0.1 * 3 is 0.30000000000000004 in floats
    assert str(Money.of("2.5", "USD")) == "2.50 USD"
    with pytest.raises(ValidationError, match="not between"):
        Money.of(MAX_AMOUNT, "EUR").times(2)


# ---- order lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "named"), [
    ({"sku": "ABC-1", "quantity": 0}, "quantity: Input should be greater than or equal to 1"),
    ({"sku": "ABC-1", "quantity": -3}, "greater than or equal to 1"),
    ({"sku": "ABC-1", "quantity": MAX_QUANTITY + 1}, "less than or equal to 1000"),
    ({"sku": "ABC-1", "quantity": "2"}, "quantity: Input should be a valid integer"),
    ({"sku": "ABC-1", "quantity": 2.0}, "quantity: Input should be a valid integer"),
    ({"sku": "ABC-1", "quantity": True}, "quantity: Input should be a valid integer"),
    ({"sku": "ABC-1"}, "quantity: Field required"),
    ({"sku": "abc-1", "quantity": 1}, "sku: String should match pattern"),
    ({"sku": "", "quantity": 1}, "sku: String should match pattern"),
    ({"sku": "-ABC", "quantity": 1}, "sku: String should match pattern"),
    ({"sku": "A/B", "quantity": 1}, "sku: String should match pattern"),
    ({"sku": "A B", "quantity": 1}, "sku: String should match pattern"),
    ({"sku": "A" * 33, "quantity": 1}, "sku: String should match pattern"),
    ({"sku": 12, "quantity": 1}, "sku: Input should be a valid string"),
])
def test_bad_lines_are_refused_naming_the_field(line: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as raised:
        OrderLine.model_validate(line)
    problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in raised.value.errors()]
    assert any(named in p for p in problems), problems


def test_a_line_is_read_in_camel_case_and_ignores_what_it_does_not_know() -> None:
    line = PricedLine.model_validate({"sku": "A_1", "quantity": MAX_QUANTITY, "giftWrap": True,
                                      "unitPrice": {"amount": "1.00", "currency": "EUR", "taxRate": "0.19"}},
                                     by_alias=True, by_name=False)
    assert (line.sku, line.quantity, line.amount) == ("A_1", 1000, Money.of("1000.00", "EUR"))
    assert line.model_dump(mode="json", by_alias=True) == {
        "sku": "A_1", "quantity": 1000, "unitPrice": {"amount": "1.00", "currency": "EUR"}}


@pytest.mark.parametrize(("lines", "named"), [
    ([], "an empty list is refused"),
    ([priced(f"S{n}") for n in range(MAX_LINES + 1)], "51 lines is over the limit of 50"),
    ([priced("A"), priced("B"), priced("A", 5)], "SKU A is named twice: give one line per SKU"),
    ([priced("A"), priced("B", currency="USD")], "mix currencies (EUR, USD)"),
    ([priced("A", MAX_QUANTITY, "99999999.99")], "is over the limit of 99999999.99"),
])
def test_an_order_of_lines_is_bounded(lines: list[PricedLine], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        check_lines(lines)


def test_the_most_an_order_may_hold_and_its_total() -> None:
    lines = [priced(f"S{n}", MAX_QUANTITY, "1999.99") for n in range(MAX_LINES)]
    assert check_lines(lines) == lines and check_lines([OrderLine(sku="A", quantity=1)])
    assert order_total(lines) == Money.of("99999500.00", "EUR")
    assert order_total([priced("A", 3, "0.10"), priced("B", 1, "0.20")]) == Money.of("0.50", "EUR")


# ---- events with items --------------------------------------------------------------------


def test_a_created_event_carries_its_priced_lines_and_their_total() -> None:
    event = created(priced("ABC-1", 2, "2.50"), priced("XYZ", 1, "0.99"))
    wire = json.loads(event.to_json())
    assert list(wire)[-2:] == ["items", "total"]
    assert wire["items"][0] == {"sku": "ABC-1", "quantity": 2, "unitPrice": {"amount": "2.50", "currency": "EUR"}}
    assert wire["total"] == {"amount": "5.99", "currency": "EUR"}
    assert OrderEvent.from_json(event.to_json()) == event == OrderEvent.from_wire(event.to_json())
    assert event.to_dict() == wire


def test_an_event_without_items_is_written_as_before_they_existed() -> None:
    event = OrderEvent.created("abc12345", "c1")
    assert event.items is None and event.total is None
    text = event.to_json()
    assert b"items" not in text and b"total" not in text and b"null" not in text
    expected = ('{"eventId":"%s","orderId":"abc12345","customerId":"c1","status":"CREATED","description":'
                '"Order placed; checking inventory","timestamp":"%s","version":1}'
                % (event.event_id, event.timestamp.isoformat().replace("+00:00", "Z")))
    assert text == expected.encode()
    assert set(event.to_dict()) == {"eventId", "orderId", "customerId", "status", "description", "timestamp", "version"}


def wire_with(**changes: object) -> bytes:
    body = json.loads(created(priced("A", 2, "2.50"), priced("B", 1, "1.00")).to_json())
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


LINE = {"sku": "A", "quantity": 2, "unitPrice": {"amount": "2.50", "currency": "EUR"}}


@pytest.mark.parametrize(("payload", "named"), [
    (wire_with(total={"amount": "6.01", "currency": "EUR"}), "total: 6.01 EUR is not the sum of the items, 6.00 EUR"),
    (wire_with(total={"amount": "6.00", "currency": "USD"}), "is not the sum of the items, 6.00 EUR"),
    (wire_with(total=...), "total: Field required (an order with items carries their total)"),
    (wire_with(total={"amount": 6.0, "currency": "EUR"}), "total.amount: Value error, 6.0 is a float"),
    (wire_with(total="6.00 EUR"), "total: Input should be a valid dictionary"),
    (wire_with(items=..., total={"amount": "6.00", "currency": "EUR"}), "total: only an order with items has a total"),
    (wire_with(items=[{**LINE, "unitPrice": {"amount": 2.5, "currency": "EUR"}}]), "is a float, which is not exact"),
    (wire_with(items=[{**LINE, "unitPrice": {"amount": "2.505", "currency": "EUR"}}]), "at most 2 decimal places"),
    (wire_with(items=[{**LINE, "unitPrice": {"amount": "2.50", "currency": "eur"}}]), "items.0.unitPrice.currency"),
    (wire_with(items=[{**LINE, "quantity": 0}]), "items.0.quantity: Input should be greater than or equal to 1"),
    (wire_with(items=[{**LINE, "quantity": -1}]), "items.0.quantity: Input should be greater than or equal to 1"),
    (wire_with(items=[{**LINE, "quantity": 1001}]), "items.0.quantity: Input should be less than or equal to 1000"),
    (wire_with(items=[{**LINE, "sku": "a b"}]), "items.0.sku: String should match pattern"),
    (wire_with(items=[{**LINE, "unitPrice": None}]), "items.0.unitPrice: Input should be a valid dictionary"),
    (wire_with(items=[LINE, LINE]), "items: Value error, SKU A is named twice"),
    (wire_with(items=[{**LINE, "sku": f"S{n}"} for n in range(51)]), "51 lines is over the limit of 50"),
    (wire_with(items=[]), "an empty list is refused"),
    (wire_with(items={"A": 2}), "items: Input should be a valid tuple"),
    (wire_with(items=[LINE, {**LINE, "sku": "B", "unitPrice": {"amount": "1.00", "currency": "USD"}}]),
     "mix currencies"),
    (wire_with(status="PAID", version=2), "items: Value error, only a CREATED event carries items"),
])
def test_bad_items_and_totals_refuse_the_event_naming_the_problem(payload: bytes, named: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(payload)
    assert raised.value.reason == SCHEMA and named in str(raised.value), str(raised.value)
    assert OrderEvent.from_wire(payload) is None  # the one-step path never accepts what from_json refuses


def test_items_given_as_null_are_no_items() -> None:
    event = OrderEvent.from_json(wire_with(items=None, total=None))
    assert event.items is None and event.total is None and b"null" not in event.to_json()


def test_a_total_in_a_description_is_no_total() -> None:
    event = OrderEvent.created("o1", "c1", description='"total": 5')
    assert OrderEvent.from_wire(event.to_json()) == event  # looked at, then found to be no field


# ---- orders and their state records ---------------------------------------------------------


def test_an_order_carries_the_items_and_total_of_its_created_event() -> None:
    first = created(priced("A", 2, "2.50"), order_id="o7")
    order = rebuild([first, OrderEvent.paid("o7", "c1", 2), OrderEvent.cancelled("o7", "c1", 3)]).orders["o7"]
    assert order.status is OrderStatus.CANCELLED
    assert order.items == first.items and order.total == Money.of("5.00", "EUR")
    plain = Order.start(OrderEvent.created("o8", "c1"))
    assert plain.items is None and plain.total is None


def test_the_state_record_carries_items_and_total_and_reads_them_back() -> None:
    order = Order.start(created(priced("A", 3, "0.10"), order_id="o9")).apply(OrderEvent.paid("o9", "c1", 2))
    record = json.loads(order_to_json(order))
    assert record["items"] == [{"sku": "A", "quantity": 3, "unitPrice": {"amount": "0.10", "currency": "EUR"}}]
    assert record["total"] == {"amount": "0.30", "currency": "EUR"}
    again = order_from_json(order_to_json(order))
    assert again == order and again.total == Money.of("0.30", "EUR")
    forged = json.dumps({**record, "total": {"amount": "0.01", "currency": "EUR"}})
    with pytest.raises(InvalidEvent, match="items or total disagree with the history"):
        order_from_json(forged.encode())


def test_the_state_record_of_an_order_without_items_is_unchanged() -> None:
    order = Order.start(OrderEvent.created("o10", "c1"))
    record = json.loads(order_to_json(order))
    assert list(record) == ["format", "orderId", "customerId", "status", "version", "lastEventId", "history"]
    assert order_from_json(order_to_json(order)) == order
    with pytest.raises(InvalidEvent, match="items or total disagree"):
        order_from_json(json.dumps({**record, "items": [LINE]}).encode())
