"""The Idempotency-Key header: a command repeated with its key answers its real outcome and
happens at most once, whether its first attempt was answered, lost on the way back, or is still
on its way to the order-processor; a key names one command."""

from __future__ import annotations

import json

import pytest
from served import Api, api  # noqa: F401  (api is a fixture)

from order_system.domain.events import OrderEvent, OrderStatus, keyed_event_id, keyed_order_id
from order_system.kafka.producer import OrderProducer
from order_system.kafka.reader import read_records


def events_of(api: Api, order_id: str) -> list[tuple[int, str, str]]:
    """(version, status, eventId) of every copy of the order's events on the topic."""
    return [(v["version"], v["status"], v["eventId"]) for r in read_records(api.settings, api.settings.topic)
            if (v := json.loads(r.value()))["orderId"] == order_id]


def test_a_repeated_create_and_pay_answer_as_the_first_and_happen_once(api: Api) -> None:
    first = api.client.post("/api/orders", json={"customerId": "erin"}, headers={"Idempotency-Key": "cart-1"})
    again = api.client.post("/api/orders", json={"customerId": "erin"}, headers={"Idempotency-Key": '"cart-1"'})
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    order_id = first.json()["orderId"]
    assert again.json()["orderId"] == order_id == keyed_order_id("erin", "cart-1")  # quotes are not part of the key
    other = api.client.post("/api/orders", json={"customerId": "frank"}, headers={"Idempotency-Key": "cart-1"})
    assert other.json()["orderId"] != order_id  # a key is scoped to its customer

    paid = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "erin"},
                           headers={"Idempotency-Key": "pay-1"})
    repeat = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "erin"},
                             headers={"Idempotency-Key": "pay-1"})
    assert paid.status_code == repeat.status_code == 202, (paid.text, repeat.text)
    assert (paid.json()["version"], repeat.json()["version"]) == (2, 2) and repeat.json()["offset"] is None
    order = api.client.get(f"/api/orders/{order_id}").json()
    assert [e["status"] for e in order["history"]] == ["CREATED", "PAID"]
    # the create's two copies share one eventId, and the processor applied it once
    assert [(v, s) for v, s, _ in events_of(api, order_id)] == [(1, "CREATED"), (1, "CREATED"), (2, "PAID")]


def test_a_repeat_of_a_command_whose_answer_was_lost_gets_its_outcome_never_a_conflict(api: Api) -> None:
    """The first attempt's event reached the topic but its answer never reached the client (as
    when the API answered 503 at its publish bound and the outbox sent the event later): the
    repeat publishes the same event again, a duplicate the processor skips, and answers 202."""
    order_id = api.client.post("/api/orders", json={"customerId": "gail"}).json()["orderId"]
    assert api.processor.wait_for_version(order_id, 1, timeout=30)
    lost = OrderEvent.for_status(OrderStatus.PAID, order_id, "gail", 2, event_id=keyed_event_id(order_id, "pay-7"))
    with OrderProducer(api.settings) as producer:  # the first attempt's event, on its way
        producer.publish(lost).result(timeout=30)
    repeat = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "gail"},
                             headers={"Idempotency-Key": "pay-7"})
    assert repeat.status_code == 202, repeat.text
    assert repeat.json()["version"] == 2
    history = api.client.get(f"/api/orders/{order_id}").json()["history"]
    assert [(e["status"], e["eventId"]) for e in history] == [("CREATED", history[0]["eventId"]),
                                                              ("PAID", str(lost.event_id))]
    # without the key, a second pay is a new command: the state machine refuses it (already paid)
    assert api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "gail"}).status_code == 409


def test_a_key_names_one_command(api: Api) -> None:
    order_id = api.client.post("/api/orders", json={"customerId": "hank"}).json()["orderId"]
    assert api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "hank"},
                           headers={"Idempotency-Key": "k-1"}).status_code == 202
    reused = api.client.post(f"/api/orders/{order_id}/ship", params={"customerId": "hank"},
                             headers={"Idempotency-Key": "k-1"})
    assert reused.status_code == 409, reused.text
    assert "already used for PAID, not SHIPPED" in reused.json()["error"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ü-key", '"', '""', "tab\there"])
def test_a_malformed_key_is_refused_with_422(api: Api, bad: str) -> None:
    answer = api.client.post("/api/orders", json={"customerId": "ivy"},
                             headers={"Idempotency-Key": bad.encode()})  # bytes: httpx sends them as they are
    assert answer.status_code == 422, (bad, answer.text)
    assert "Idempotency-Key" in answer.json()["error"] or "idempotency-key" in answer.json()["error"].lower()
