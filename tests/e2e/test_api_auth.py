"""Authentication on: a bearer token stands for one customer, who sees and acts only on its own orders."""

from __future__ import annotations

import logging

import pytest
from served import TOKENS, Api, api, authed_api  # noqa: F401  (fixtures)

ALICE, BOB = ({"Authorization": f"Bearer {token}"} for token in TOKENS)


def create(api: Api, headers: dict[str, str], customer: str) -> str:
    answer = api.client.post("/api/orders", json={"customerId": customer}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["orderId"]


def test_no_or_unknown_token_is_401_and_never_echoed(authed_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "not-a-token-but-a-secret-0123"
    for headers in ({}, {"Authorization": f"Bearer {secret}"}, {"Authorization": "Basic YWxpY2U6eA=="}):
        for method, path in (("GET", "/api/orders"), ("POST", "/api/orders"), ("GET", "/api/orders/abcd1234"),
                             ("POST", "/api/orders/abcd1234/pay?customerId=alice")):
            answer = authed_api.client.request(method, path, headers=headers, json={"customerId": "alice"})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["error"] in ("send Authorization: Bearer <token>", "unknown bearer token")
            assert secret not in answer.text
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert authed_api.client.get("/health").status_code == 200  # health stays open


def test_a_caller_sees_and_acts_only_on_its_own_orders(authed_api: Api) -> None:
    api = authed_api
    mine = create(api, ALICE, "alice")
    theirs = create(api, BOB, "bob")
    assert api.processor.wait_for_version(mine, 1, 30) and api.processor.wait_for_version(theirs, 1, 30)

    assert api.client.get(f"/api/orders/{mine}", headers=ALICE).json()["customerId"] == "alice"
    # someone else's order looks exactly like one that does not exist
    hidden = api.client.get(f"/api/orders/{theirs}", headers=ALICE)
    absent = api.client.get("/api/orders/nosuch00", headers=ALICE)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json() == {"error": f"order {theirs} does not exist", "orderId": theirs}

    # acting on it: 404 as well, and nothing is published
    pay = api.client.post(f"/api/orders/{theirs}/pay", params={"customerId": "alice"}, headers=ALICE)
    assert pay.status_code == 404 and pay.json()["error"] == f"order {theirs} does not exist"
    # claiming to be bob with alice's token: 403, whatever the order
    claim = api.client.post(f"/api/orders/{theirs}/pay", params={"customerId": "bob"}, headers=ALICE)
    assert claim.status_code == 403 and "customerId must be the customer of the bearer token" in claim.json()["error"]
    forged = api.client.post("/api/orders", json={"customerId": "bob"}, headers=ALICE)
    assert forged.status_code == 403
    assert api.processor.version(theirs) == 1

    # listing is scoped to the caller
    listed = api.client.get("/api/orders", headers=ALICE).json()["orders"]
    assert [o["orderId"] for o in listed] == [mine]
    assert api.client.get("/api/orders", params={"customerId": "alice"}, headers=ALICE).json()["count"] == 1
    assert api.client.get("/api/orders", params={"customerId": "bob"}, headers=ALICE).status_code == 403

    # the owner acts as usual
    own = api.client.post(f"/api/orders/{theirs}/pay", params={"customerId": "bob"}, headers=BOB)
    assert own.status_code == 202 and own.json()["status"] == "PAID"


def test_openapi_declares_bearer_only_when_on(authed_api: Api, api: Api) -> None:
    on = authed_api.client.get("/openapi.json").json()
    assert on["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in on["paths"]["/api/orders"]["get"]["responses"]
    off = api.client.get("/openapi.json").json()
    assert "securitySchemes" not in off.get("components", {})
    assert "401" not in off["paths"]["/api/orders"]["get"]["responses"]
