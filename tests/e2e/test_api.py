"""The REST API over real HTTP (uvicorn) with the real broker and consumer groups behind it."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serving import serve_in_thread
from served import Api, api  # noqa: F401  (api is a fixture)

from order_system.interfaces.api import REQUEST_THREADS, create_app
from order_system.config import Settings
from order_system.kafka.reader import read_records
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.state.view import OrderView
from order_system.state.outbox import Outbox
from order_system.kafka.ordering import OrderedProducer
from order_system.kafka.producer import OrderProducer


def create(api: Api, customer: str = "customer-123") -> str:
    answer = api.client.post("/api/orders", json={"customerId": customer})
    assert answer.status_code == 201, answer.text
    return answer.json()["orderId"]


def test_the_tutorial_lifecycle(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="order_system.interfaces.api")
    answer = api.client.post("/api/orders", json={"customerId": "customer-123"})
    assert answer.status_code == 201
    body = answer.json()
    order_id = body["orderId"]
    assert len(order_id) == 8 and order_id.isalnum() and body["message"]
    for action, status in [("pay", "PAID"), ("ship", "SHIPPED"), ("deliver", "DELIVERED")]:
        # straight after the previous write: the API waits for its own write to be processed
        step = api.client.post(f"/api/orders/{order_id}/{action}", params={"customerId": "customer-123"})
        assert step.status_code == 202, step.text
        assert step.json()["status"] == status and step.json()["partition"] == body["partition"]
    assert api.processor.wait_for_version(order_id, 4, timeout=30)
    order = api.client.get(f"/api/orders/{order_id}").json()
    assert order["status"] == "DELIVERED" and order["customerId"] == "customer-123"
    assert [e["status"] for e in order["history"]] == ["CREATED", "PAID", "SHIPPED", "DELIVERED"]
    assert any(f"POST /api/orders/{order_id}/deliver -> 202 in" in r.getMessage() for r in caplog.records)


def server_timing(answer: httpx.Response) -> dict[str, float]:
    """The answer's Server-Timing header as {stage: milliseconds}."""
    stages = {}
    for part in answer.headers["Server-Timing"].split(","):
        name, duration = part.strip().split(";dur=")
        stages[name] = float(duration)
    return stages


def test_each_answer_says_where_its_time_went(api: Api) -> None:
    """Server-Timing: a command's stages (lock, view, publish, verdict, shown) add up to no more
    than its total; an answer refused on the view has no publish stage (nothing was sent)."""
    created = api.client.post("/api/orders", json={"customerId": "hana"})
    assert created.status_code == 201, created.text
    assert set(server_timing(created)) == {"lock", "publish", "total"}, created.headers["Server-Timing"]
    order_id = created.json()["orderId"]
    paid = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "hana"})
    assert paid.status_code == 202, paid.text
    stages = server_timing(paid)
    assert {"lock", "view", "publish", "verdict", "shown", "total"} <= set(stages), stages
    assert stages["verdict"] > 0 and sum(v for k, v in stages.items() if k != "total") <= stages["total"] + 0.5
    refused = api.client.post(f"/api/orders/{order_id}/deliver", params={"customerId": "hana"})
    assert refused.status_code == 409, refused.text  # PAID -> DELIVERED skips SHIPPED
    assert "view" in server_timing(refused) and "publish" not in server_timing(refused)


@pytest.mark.parametrize(
    ("body", "problem"),
    [({}, "customerId: Field required"), ({"customerId": "   "}, "customerId: must not be blank"),
     ({"customerId": "x" * 65}, "customerId: String should have at most 64 characters"),
     ({"customerId": 42}, "customerId: Input should be a valid string"),
     ({"customerId": "c", "extra": 1}, "extra: Extra inputs are not permitted")],
)
def test_bad_create_requests_are_422_with_a_clear_message(api: Api, body: dict, problem: str) -> None:
    answer = api.client.post("/api/orders", json=body)
    assert answer.status_code == 422
    assert problem in answer.json()["error"]


def test_malformed_json_is_422(api: Api) -> None:
    answer = api.client.post("/api/orders", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "JSON" in answer.json()["error"]


def test_errors_on_transitions(api: Api) -> None:
    order_id = create(api, "alice")
    unknown = api.client.post("/api/orders/nosuch00/pay", params={"customerId": "alice"})
    assert unknown.status_code == 404 and "nosuch00 does not exist" in unknown.json()["error"]
    assert api.client.get("/api/orders/nosuch00").status_code == 404

    stranger = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "mallory"})
    assert stranger.status_code == 403 and "does not belong to customer mallory" in stranger.json()["error"]

    early = api.client.post(f"/api/orders/{order_id}/deliver", params={"customerId": "alice"})
    assert early.status_code == 409
    assert (early.json()["currentStatus"], early.json()["requestedStatus"]) == ("CREATED", "DELIVERED")
    assert "cannot go from CREATED to DELIVERED" in early.json()["error"]

    missing = api.client.post(f"/api/orders/{order_id}/pay")
    assert missing.status_code == 422 and "customerId" in missing.json()["error"]
    blank = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "  "})
    assert blank.status_code == 422 and "must not be blank" in blank.json()["error"]
    long = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "x" * 65})
    assert long.status_code == 422 and "at most 64 characters" in long.json()["error"]
    bogus = api.client.post(f"/api/orders/{order_id}/refund", params={"customerId": "alice"})
    assert bogus.status_code == 422 and "path.action: Input should be 'pay', 'ship'" in bogus.json()["error"]

    assert api.client.post(f"/api/orders/{order_id}/cancel", params={"customerId": "alice"}).status_code == 202
    after = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "alice"})
    assert after.status_code == 409 and after.json()["currentStatus"] == "CANCELLED"


def statuses_on_topic(settings: Settings) -> Counter[tuple[str, OrderStatus]]:
    return Counter((e.order_id, e.status) for e in
                   (OrderEvent.from_json(m.value()) for m in read_records(settings, settings.topic, 30, 100_000)))


def test_two_concurrent_pays_one_wins(api: Api) -> None:
    order_id = create(api, "bob")
    barrier = threading.Barrier(2)

    def pay() -> int:
        barrier.wait()
        return api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "bob"}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: pay(), range(2)))
    assert codes == [202, 409]
    assert api.processor.wait_for_version(order_id, 2, timeout=30)
    assert statuses_on_topic(api.settings)[(order_id, OrderStatus.PAID)] == 1


def test_a_burst_of_concurrent_requests_ends_consistent(api: Api) -> None:
    def lifecycle(n: int) -> str:
        customer = f"burst-{n % 5}"
        order_id = create(api, customer)
        for action in ("pay", "ship", "deliver") if n % 4 else ("pay", "cancel"):
            answer = api.client.post(f"/api/orders/{order_id}/{action}", params={"customerId": customer})
            assert answer.status_code == 202, answer.text
        return order_id

    with ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(lifecycle, range(40)))
    for n, order_id in enumerate(orders):
        assert api.processor.wait_for_version(order_id, 4 if n % 4 else 3, timeout=30)
    states = api.processor.statuses()
    assert all(states[o] is (OrderStatus.DELIVERED if n % 4 else OrderStatus.CANCELLED) for n, o in enumerate(orders))
    counts = statuses_on_topic(api.settings)
    assert max(counts.values()) == 1  # no transition was published twice
    listed = api.client.get("/api/orders", params={"status": "CANCELLED", "customerId": "burst-0"}).json()
    assert {o["orderId"] for o in listed["orders"]} == {o for n, o in enumerate(orders) if n % 4 == 0 and n % 5 == 0}


def test_health_reports_broker_and_lag(api: Api) -> None:
    order_id = create(api)
    assert api.processor.wait_for_version(order_id, 1, timeout=30)
    health = api.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["broker"] == "up" and body["outbox"] == 0
    assert {row["group"] for row in body["lag"]} == {"order-processor"} and len(body["lag"]) == 3


def test_broker_unreachable_is_503_quickly_and_the_event_is_kept(tmp_path: Path, free_port: int) -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port}", topic="unreachable")
    outbox = Outbox(tmp_path / "outbox.db")
    with OrderedProducer(settings, outbox, extra_config={"delivery.timeout.ms": 2000,
                                                         "socket.connection.setup.timeout.ms": 1000}) as producer:
        app = create_app(settings, producer, OrderView(settings), outbox=outbox, publish_timeout=5)  # never started
        with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            began = time.monotonic()
            answer = client.post("/api/orders", json={"customerId": "carol"})
            took = time.monotonic() - began
            health = client.get("/health")
        producer.flush(0)
    assert answer.status_code == 503 and took < 8, (answer.status_code, took)
    assert answer.headers["retry-after"] == "1"
    assert "kept in the outbox" in answer.json()["error"]
    [kept] = outbox.pending()
    assert OrderEvent.from_json(kept.value).order_id == answer.json()["orderId"]
    assert health.status_code == 503 and health.json()["broker"] == "down"


def test_openapi_docs_are_served(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/api/orders", "/api/orders/{order_id}/{action}", "/api/orders/{order_id}", "/health"} <= set(paths)


def test_the_app_runs_more_requests_at_once_than_anyio_by_default(api: Api) -> None:
    """Each command waits for its verdict in a request thread: anyio's default of 40 threads capped
    the commands in flight (and so their rate) at 40."""
    import anyio
    import anyio.to_thread

    async def threads_once_started() -> int:
        async with api.app.router.lifespan_context(api.app):  # what uvicorn runs at start
            return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(threads_once_started) == REQUEST_THREADS > 40


def test_get_history_effects_and_the_list_agree_whatever_versions_come(api: Api) -> None:
    """The issue's case: v1 CREATED (the API), then v3 PAID and v2 SHIPPED from elsewhere, then a
    conflicting v2 after the API's own v2: one version policy, so every view tells one story."""
    from order_system.kafka.dead_letters import read_dead_letters
    from order_system.kafka.lag import wait_for_zero_lag

    order_id = create(api)
    assert api.processor.wait_for_version(order_id, 1, timeout=30)
    strangers = [OrderEvent.paid(order_id, "customer-123", 3), OrderEvent.shipped(order_id, "customer-123", 2)]
    with OrderProducer(api.settings) as producer:
        for event in strangers:
            producer.publish(event).result(timeout=30)
    wait_for_zero_lag(api.settings, ["order-processor"], timeout=60)
    assert api.client.get(f"/api/orders/{order_id}").json()["version"] == 1

    paid = api.client.post(f"/api/orders/{order_id}/pay", params={"customerId": "customer-123"})
    assert paid.status_code == 202 and paid.json()["version"] == 2, paid.text
    assert api.processor.wait_for_version(order_id, 2, timeout=30)
    with OrderProducer(api.settings) as producer:
        producer.publish(OrderEvent.cancelled(order_id, "customer-123", 2)).result(timeout=30)
    wait_for_zero_lag(api.settings, ["order-processor"], timeout=60)

    order = api.client.get(f"/api/orders/{order_id}").json()
    assert (order["status"], order["version"]) == ("PAID", 2)
    assert [(e["version"], e["status"]) for e in order["history"]] == [(1, "CREATED"), (2, "PAID")]
    listed = api.client.get("/api/orders").json()
    row = next(o for o in listed["orders"] if o["orderId"] == order_id)
    assert (row["status"], row["version"]) == ("PAID", 2)
    effects = api.processor.effects_frame()
    effect_events = set(effects[effects["order_id"] == order_id]["event_id"])
    assert effect_events == {e["eventId"] for e in order["history"]}
    dead = read_dead_letters(api.settings)
    assert sorted(dead["reason"]) == ["invalid-transition", "version-conflict", "version-gap"]
