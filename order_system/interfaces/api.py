"""The REST front door: each request becomes an event; answers come at once.

``create_app`` receives everything it uses (settings, producer, the view of every order, an
outbox, optional API tokens), so nothing connects at import; ``serve.py`` wires real ones and
runs uvicorn, like the tutorial's single Spring Boot application. The routes are thin: a command
goes to ``services/commands.py`` (read-your-writes, the processor's verdict, conflicts between
instances), a read to the view of ``order-state``, so any instance answers any order.

Every error body is ``{"error": "...", ...}``; ``http.error_responses`` says what each status
means, and each route declares its own in the OpenAPI. With authentication on, another
customer's order is a 404, so its existence does not leak. A 503 (with ``Retry-After``) is a
broker out of reach (the event is kept in the outbox and sent later) or a bounded wait that ran
out. A command repeated with the same ``Idempotency-Key`` answers its real outcome and happens
at most once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..domain.errors import NotYourOrder, UnknownOrder
from ..domain.events import OrderStatus
from ..services.commands import OrderCommands
from .http import BodyLimit, error_responses, install_error_handlers
from .schemas import (ACTIONS, MAX_LIMIT, MAX_OFFSET, RETRY_AFTER_SECONDS, Action, ActionAccepted, CreateOrder,
                      CustomerId, Health, IdempotencyKeyHeader, OrderAccepted, OrderIdPath, OrderPage, OrderResponse,
                      OrderSummary)

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import Settings
    from ..kafka.producer import OrderProducer
    from ..state.outbox import Outbox
    from ..state.view import OrderView
    from .auth import ApiTokens

# serve's bounds (create_app's defaults). A record not acknowledged within DELIVERY_TIMEOUT_MS
# (bootstrap.py) is kept in the outbox, and its request answers 503 at PUBLISH_BOUND. Both lie above the time a
# cluster takes to replace a dead node: 3 to 5 s on the local tuned cluster, about 12 s with
# Kafka's default broker session of 9 s. VIEW_BOUND bounds the wait for the view (and, for an order
# it does not know yet, for the processor); the wait for the processor's verdict is OrderCommands' own.
PUBLISH_BOUND = 16.0
VIEW_BOUND = 10.0

REQUEST_THREADS = 100
"""Requests run at once (the routes are sync: each takes a thread). A command mostly waits for the
processor's verdict; anyio's default of 40 threads capped commands at 40 / their latency (about
250/s with ~150 ms commands on a busy 2-core machine, ``benchmarks/command_latency.py``)."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    yield


def create_app(
    settings: Settings,
    producer: OrderProducer,
    view: OrderView,
    *,
    outbox: Outbox | None = None,
    tokens: ApiTokens | None = None,
    groups: tuple[str, ...] = ("order-processor", "notification-service", "analytics-service"),
    publish_timeout: float = PUBLISH_BOUND,
    view_timeout: float = VIEW_BOUND,
    counted_in: Path | None = None,
) -> FastAPI:
    """The application (see the module doc). With ``tokens`` every order route needs
    ``Authorization: Bearer <token>``, and a caller sees and acts only on the orders of the
    customer its token stands for. ``counted_in``: ``groups`` run in serve's child processes,
    which count their records there (``metrics.ChildCounts``)."""
    app = FastAPI(title="order-system", summary="An event-driven order system on Apache Kafka", lifespan=_lifespan)
    app.add_middleware(BodyLimit)
    install_error_handlers(app)
    commands = OrderCommands(producer, view, publish_timeout, view_timeout)
    app.state.commands = commands
    guarded = [Depends(_authenticate(tokens))]  # sets request.state.customer; declared only when on
    auth_errors: tuple[int, ...] = (401,) if tokens is not None else ()

    @app.post("/api/orders", status_code=201, dependencies=guarded,
              responses=error_responses(*auth_errors, 400, 403, 413, 422, 503))
    def create_order(body: CreateOrder, customer: Annotated[str | None, Depends(_caller)],
                     idempotency_key: IdempotencyKeyHeader = None) -> OrderAccepted:
        if customer is not None and body.customer_id != customer:
            raise HTTPException(403, "customerId must be the customer of the bearer token")
        event, delivery = commands.create(body.customer_id, idempotency_key)
        return OrderAccepted(order_id=event.order_id, message="Order accepted; it is being processed",
                             status=event.status, partition=delivery.partition, offset=delivery.offset)

    @app.post("/api/orders/{order_id}/{action}", status_code=202, dependencies=guarded,
              responses=error_responses(*auth_errors, 400, 403, 404, 409, 413, 422, 503))
    def advance_order(order_id: OrderIdPath, action: Action,
                      customer_id: Annotated[CustomerId, Query(alias="customerId")],
                      customer: Annotated[str | None, Depends(_caller)],
                      idempotency_key: IdempotencyKeyHeader = None) -> ActionAccepted:
        if customer is not None and customer_id != customer:
            raise HTTPException(403, "customerId must be the customer of the bearer token")
        try:
            event, delivery = commands.advance(order_id, customer_id, ACTIONS[action], idempotency_key)
        except NotYourOrder:
            if customer is not None:
                raise UnknownOrder(order_id) from None  # another customer's order: do not reveal it exists
            raise
        return ActionAccepted(order_id=order_id, status=event.status, version=event.version,
                              message=f"{action.value} accepted", partition=delivery.partition,
                              offset=delivery.offset)

    @app.get("/api/orders/{order_id}", dependencies=guarded,
             responses=error_responses(*auth_errors, 400, 404, 422, 503))
    def get_order(order_id: OrderIdPath, customer: Annotated[str | None, Depends(_caller)]) -> OrderResponse:
        order = commands.read(order_id)  # whatever was committed before this request, on any instance
        if customer is not None and order.customer_id != customer:
            raise UnknownOrder(order_id)
        return OrderResponse(order_id=order.order_id, customer_id=order.customer_id, status=order.status,
                             version=order.version, history=[e.to_dict() for e in order.history])

    @app.get("/api/orders", dependencies=guarded, responses=error_responses(*auth_errors, 400, 403, 422, 503))
    def list_orders(
        customer: Annotated[str | None, Depends(_caller)],
        status: OrderStatus | None = None,
        customer_id: Annotated[str | None, Query(alias="customerId", max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> OrderPage:
        """Newest first; with authentication on, only the caller's own orders."""
        if customer is not None:
            if customer_id is not None and customer_id != customer:
                raise HTTPException(403, "customerId must be the customer of the bearer token")
            customer_id = customer
        if not view.catch_up_all(view_timeout):
            raise HTTPException(503, "the view did not catch up with order-state in time; try again shortly",
                                {"Retry-After": str(RETRY_AFTER_SECONDS)})
        rows = view.summaries(status=status, customer_id=customer_id, limit=limit, offset=offset)
        orders = [OrderSummary(order_id=r["order_id"], customer_id=r["customer_id"], status=r["status"],
                               version=r["version"], updated_at=r["updated_at"]) for r in rows]
        return OrderPage(orders=orders, limit=limit, offset=offset, count=len(orders))

    @app.get("/health", response_model=Health,
             responses={503: {"model": Health, "description": "The broker does not answer"}})
    def health() -> JSONResponse:
        from ..kafka.lag import consumer_lag
        from ..kafka.reachability import answers_metadata

        up = answers_metadata(settings.bootstrap_servers, timeout=3.0, client_options=dict(settings.client_options))
        body: dict[str, Any] = {"broker": "up" if up else "down", "bootstrap": settings.bootstrap_servers,
                                "outbox": len(outbox) if outbox is not None else None}
        if up:
            frame = consumer_lag(settings, groups)
            body["lag"] = json.loads(frame.to_json(orient="records"))
        return JSONResponse(Health.model_validate(body).model_dump(), status_code=200 if up else 503)

    from .metrics import HttpMetrics, registry_for  # added last: outermost, so /metrics needs no auth
    app.add_middleware(HttpMetrics, registry=registry_for(settings, groups, outbox, counted_in))
    return app


_BEARER = HTTPBearer(auto_error=False, description="A token from ORDER_SYSTEM_API_TOKENS; it stands for one customer")


def _authenticate(tokens: ApiTokens | None) -> Callable[..., Awaitable[None]]:
    """A route dependency that puts the caller's customer id (from its bearer token) in
    ``request.state.customer``; with ``tokens`` None (authentication off) it puts None.

    The dependencies are ``async def``: they never block, and FastAPI runs a plain ``def``
    dependency in a worker thread, one thread hop each per request (with the route's own, that was
    a quarter of the API's CPU time per command)."""
    if tokens is None:
        async def anyone(request: Request) -> None:
            request.state.customer = None
        return anyone

    async def token_owner(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise HTTPException(401, "send Authorization: Bearer <token>", challenge)
        customer = tokens.customer(credentials.credentials)
        if customer is None:
            raise HTTPException(401, "unknown bearer token", challenge)
        request.state.customer = customer

    return token_owner


async def _caller(request: Request) -> str | None:
    """The customer the request's bearer token stands for; None when authentication is off."""
    return request.state.customer
