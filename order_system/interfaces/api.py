"""The REST front door: each request becomes an event; answers come at once.

``create_app`` receives everything it uses (settings, producer, the order-processor's view,
an outbox, optional API tokens), so nothing connects at import. ``serve`` wires real ones and
runs uvicorn with the consumer groups in background threads, like the tutorial's single Spring
Boot application.

Every error body is ``{"error": "...", ...}``. Codes: 400 unreadable request, 401 missing or
unknown bearer token (authentication on), 403 a customerId that is not the caller's own (or,
authentication off, not the order's), 404 unknown order or path (authentication on, also
another customer's order, so existence does not leak), 405 method not allowed (with ``Allow``),
409 a transition the state machine forbids, or a command the order-processor rejected (another
instance's command for the order won), 413 a body over ``MAX_BODY_BYTES``, 422 bad input or an
out-of-range number, 503 broker unreachable (the event is kept in the outbox and sent later), or a
bounded wait for the view or the processor's verdict ran out (with ``Retry-After``).

Every order is read from an ``OrderView`` of ``order-state``, so any instance answers any order;
see ``services/commands.py`` for read-your-writes and conflicts between instances.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..services.commands import OrderCommands
from ..domain.errors import (CommandRejected, ConfigError, IdempotencyKeyReused, InvalidTransition, NotYourOrder,
                             OrderSystemError, PublishError, StillProcessing, UnknownOrder)
from ..domain.events import OrderStatus

if TYPE_CHECKING:
    from .auth import ApiTokens
    from ..config import Settings
    from ..kafka.outbox import Outbox
    from ..state.view import OrderView as StateView
    from ..kafka.producer import OrderProducer

log = logging.getLogger("order_system.interfaces.api")
request_log = logging.getLogger("order_system.interfaces.api.requests")  # a line per request

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
CUSTOMER_RULES: dict[str, Any] = {"min_length": 1, "max_length": 64, "pattern": NOT_BLANK}
OrderIdPath = Annotated[str, Path(min_length=1, max_length=64, description="The order's id")]
MAX_IDEMPOTENCY_KEY = 128
IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY + 2,
    description="Names this command (the IETF httpapi draft's header): repeat the request with the same key "
                "after a 503, a timeout or a lost connection, and it answers the command's real outcome; the "
                "command happens at most once. 1 to 128 printable ASCII characters, optionally in double quotes.")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateOrder(_Camel):
    customer_id: Annotated[str, Field(**CUSTOMER_RULES)]

    @field_validator("customer_id")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class OrderAccepted(_Camel):
    order_id: str
    message: str
    status: OrderStatus
    partition: int
    offset: int | None = Field(description="null when the broker acknowledged a retried send it had "
                                            "already stored, without saying at which offset")


class ActionAccepted(OrderAccepted):
    version: int


class OrderView(_Camel):
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


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {400: "The request could not be read", 401: "Missing or unknown bearer token",
               403: "The customerId is not the caller's (or the order's)", 404: "No such order",
               409: "The state machine forbids this transition, or the order-processor rejected the command "
                    "(another command for the order won)",
               413: f"The request body is larger than {MAX_BODY_BYTES} bytes",
               422: "Invalid input, or an Idempotency-Key already used for another step of this order",
               503: "The broker is unreachable (the event is kept), or the view or the order-processor did "
                    "not catch up in time (see Retry-After); repeat with the same Idempotency-Key to learn "
                    "the outcome"}
    retry_after = {"Retry-After": {"description": "Seconds to wait before trying again",
                                   "schema": {"type": "integer"}}}
    return {code: {"model": ErrorBody, "description": meaning[code], **({"headers": retry_after} if code == 503 else {})}
            for code in codes}


class ApiError(Exception):
    """An answer other than 2xx, with a clear message and optional details."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.details = status, message, headers, details


STATUS_OF: dict[type[Exception], int] = {
    UnknownOrder: 404, NotYourOrder: 403, InvalidTransition: 409, CommandRejected: 409, StillProcessing: 503,
    PublishError: 503, IdempotencyKeyReused: 422,
}


def _idempotency_key(raw: str | None) -> str | None:
    """The header's key without surrounding whitespace and quotes; 422 unless 1 to 128 printable ASCII."""
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in key):
        raise ApiError(422, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


def _problem(error: Any) -> str:
    """pydantic's message, plainer where it would quote a regular expression."""
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NOT_BLANK:
        return "must not be blank"
    return str(error["msg"])


def _error(status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status, headers=headers)


class LogRequests:
    """A line per request on ``request_log``; plain ASGI, and nothing at all when that logger is
    quiet (Starlette's ``@app.middleware`` costs a task and a stream per request even then)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not request_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            request_log.info("%s %s -> %d in %.1f ms", scope["method"], scope["path"], status[0],
                             (time.perf_counter() - began) * 1000)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before reading them in full.

    A Content-Length over the limit is refused at once; a body without one (chunked) is read
    only up to the limit, then handed on, or refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _error(400, "Content-Length is not a number")(scope, receive, send)
            elif int(length) > self.limit:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, f"the request body is larger than {self.limit} bytes", {"Connection": "close"})
        await response(scope, receive, send)


def _allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route of this path answers (for ``Allow``), OPTIONS included."""
    methods = {"OPTIONS"}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


# serve's bounds (create_app's defaults). A record not acknowledged within DELIVERY_TIMEOUT_MS is
# kept in the outbox, and its request answers 503 at PUBLISH_BOUND. Both lie above the time a
# cluster takes to replace a dead node: 3 to 5 s on the local tuned cluster, about 12 s with
# Kafka's default broker session of 9 s. VIEW_BOUND bounds the wait for the view (and, for an order
# it does not know yet, for the processor); VERDICT_BOUND the wait for the processor's verdict.
DELIVERY_TIMEOUT_MS = 15_000
PUBLISH_BOUND = 16.0
VIEW_BOUND = 10.0
VERDICT_BOUND = 15.0

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
    view: StateView,
    *,
    outbox: Outbox | None = None,
    tokens: ApiTokens | None = None,
    groups: tuple[str, ...] = ("order-processor", "notification-service", "analytics-service"),
    publish_timeout: float = PUBLISH_BOUND,
    view_timeout: float = VIEW_BOUND,
    verdict_timeout: float = VERDICT_BOUND,
) -> FastAPI:
    """The FastAPI application, built from the collaborators it is given.

    With ``tokens`` every order route needs ``Authorization: Bearer <token>``, and a caller
    sees and acts only on the orders of the customer its token stands for.
    """
    app = FastAPI(title="order-system", summary="An event-driven order system on Apache Kafka", lifespan=_lifespan)
    app.add_middleware(BodyLimit)
    commands = OrderCommands(producer, view, outbox, publish_timeout, view_timeout, verdict_timeout)
    app.state.commands = commands
    guarded = [Depends(_authenticate(tokens))]  # sets request.state.customer; declared only when on
    auth_errors: tuple[int, ...] = (401,) if tokens is not None else ()

    app.add_middleware(LogRequests)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers, **exc.details)

    @app.exception_handler(OrderSystemError)
    async def domain_error(request: Request, exc: OrderSystemError) -> JSONResponse:
        details: dict[str, Any] = {}
        if order_id := getattr(exc, "order_id", None):
            details["orderId"] = order_id
        if isinstance(exc, InvalidTransition):
            details["currentStatus"] = getattr(exc.current, "value", None)
            details["requestedStatus"] = getattr(exc.requested, "value", None)
        if isinstance(exc, CommandRejected):
            details["reason"] = exc.reason
        status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 500)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return _error(status, str(exc), headers, **details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {_problem(e)}" for e in exc.errors()]
        return _error(422, "; ".join(problems), problems=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """FastAPI's and Starlette's own errors (400, routing 404, 405) in the same shape."""
        if exc.status_code == 405:
            allow = _allowed_methods(app, request.scope)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            return _error(405, f"{request.method} is not allowed here; use {allow}", {"Allow": allow})
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal server error; the server log has the details")

    @app.post("/api/orders", status_code=201, dependencies=guarded, responses=_errors(*auth_errors, 400, 403, 413, 422, 503))
    def create_order(body: CreateOrder, customer: Annotated[str | None, Depends(_caller)],
                     idempotency_key: IdempotencyKeyHeader = None) -> OrderAccepted:
        if customer is not None and body.customer_id != customer:
            raise ApiError(403, "customerId must be the customer of the bearer token")
        event, delivery = commands.create(body.customer_id, _idempotency_key(idempotency_key))
        return OrderAccepted(order_id=event.order_id, message="Order accepted; it is being processed",
                             status=event.status, partition=delivery.partition, offset=delivery.offset)

    @app.post("/api/orders/{order_id}/{action}", status_code=202, dependencies=guarded,
              responses=_errors(*auth_errors, 400, 403, 404, 409, 413, 422, 503))
    def advance_order(order_id: OrderIdPath, action: Action,
                      customer_id: Annotated[str, Query(alias="customerId", **CUSTOMER_RULES)],
                      customer: Annotated[str | None, Depends(_caller)],
                      idempotency_key: IdempotencyKeyHeader = None) -> ActionAccepted:
        customer_id = customer_id.strip()
        if customer is not None and customer_id != customer:
            raise ApiError(403, "customerId must be the customer of the bearer token")
        key = _idempotency_key(idempotency_key)
        try:
            event, delivery = commands.advance(order_id, customer_id, ACTIONS[action], key)
        except NotYourOrder:
            if customer is not None:
                raise UnknownOrder(order_id) from None  # another customer's order: do not reveal it exists
            raise
        return ActionAccepted(order_id=order_id, status=event.status, version=event.version,
                              message=f"{action.value} accepted", partition=delivery.partition,
                              offset=delivery.offset)

    @app.get("/api/orders/{order_id}", dependencies=guarded, responses=_errors(*auth_errors, 400, 404, 422, 503))
    def get_order(order_id: OrderIdPath, customer: Annotated[str | None, Depends(_caller)]) -> OrderView:
        order = commands.read(order_id)  # whatever was committed before this request, on any instance
        if customer is not None and order.customer_id != customer:
            raise UnknownOrder(order_id)
        return OrderView(order_id=order.order_id, customer_id=order.customer_id, status=order.status,
                         version=order.version, history=[e.to_dict() for e in order.history])

    @app.get("/api/orders", dependencies=guarded, responses=_errors(*auth_errors, 400, 403, 422, 503))
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
                raise ApiError(403, "customerId must be the customer of the bearer token")
            customer_id = customer
        if not view.catch_up_all(view_timeout):
            raise ApiError(503, "the view did not catch up with order-state in time; try again shortly",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        rows = view.summaries(status=status, customer_id=customer_id, limit=limit, offset=offset)
        orders = [OrderSummary(order_id=r["order_id"], customer_id=r["customer_id"], status=r["status"],
                               version=r["version"], updated_at=r["updated_at"]) for r in rows]
        return OrderPage(orders=orders, limit=limit, offset=offset, count=len(orders))

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "The broker does not answer"}})
    def health() -> JSONResponse:
        from ..local.broker import answers_metadata
        from ..kafka.lag import consumer_lag

        up = answers_metadata(settings.bootstrap_servers, timeout=3.0, client_options=dict(settings.client_options))
        body: dict[str, Any] = {"broker": "up" if up else "down", "bootstrap": settings.bootstrap_servers,
                                "outbox": len(outbox) if outbox is not None else None}
        if up:
            frame = consumer_lag(settings, groups)
            body["lag"] = json.loads(frame.to_json(orient="records"))
        return JSONResponse(Health.model_validate(body).model_dump(), status_code=200 if up else 503)

    from .metrics import HttpMetrics, registry_for  # added last: outermost, so /metrics needs no auth
    app.add_middleware(HttpMetrics, registry=registry_for(settings, groups, outbox))
    return app


_BEARER = HTTPBearer(auto_error=False, description="A token from ORDER_SYSTEM_API_TOKENS; it stands for one customer")


def _authenticate(tokens: ApiTokens | None) -> Callable[..., None]:
    """A route dependency that puts the caller's customer id (from its bearer token) in
    ``request.state.customer``; with ``tokens`` None (authentication off) it puts None."""
    if tokens is None:
        def anyone(request: Request) -> None:
            request.state.customer = None
        return anyone

    def token_owner(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(401, "send Authorization: Bearer <token>", challenge)
        customer = tokens.customer(credentials.credentials)
        if customer is None:
            raise ApiError(401, "unknown bearer token", challenge)
        request.state.customer = customer

    return token_owner


def _caller(request: Request) -> str | None:
    """The customer the request's bearer token stands for; None when authentication is off."""
    return request.state.customer


# ---- the `order-system serve` command ----------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 5.0  # how long a stop waits for requests in progress before cutting them
VIEW_LOAD_SECONDS = 300.0  # how long serve may take to read all of order-state before it listens


def _uvicorn_server(app: FastAPI, host: str, port: int) -> Any:
    """A uvicorn server that stops on SIGINT/SIGTERM and then returns to its caller.

    uvicorn's own ``capture_signals`` raises the signal again once the server is down, which
    kills the process (exit 143 for SIGTERM) before the caller can commit offsets, flush the
    producer and stop the relay. This subclass only restores the previous handlers.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                if self._captured_signals:
                    log.info("stop signal %s received; stopping", signal.Signals(self._captured_signals[0]).name)

    return Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,  # LogRequests does
                                 timeout_graceful_shutdown=int(GRACE_SECONDS)))


INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


def valid_instance_id(text: str) -> str:
    """``text`` if it is 1 to 100 letters, digits, '.', '_' or '-', else ``ConfigError``."""
    if not INSTANCE_ID.fullmatch(text):
        raise ConfigError(f"instance id {text[:100]!r}: use 1 to 100 letters, digits, '.', '_' or '-'")
    return text


def instance_id_for(port: int, env: Mapping[str, str] | None = None) -> str:
    """``ORDER_SYSTEM_INSTANCE_ID``, else ``<hostname>-<port>``: stable across restarts of the same
    instance (its transactional id is derived from it), different for two instances on one machine."""
    from ..services.processor import INSTANCE_ENV

    given = ((os.environ if env is None else env).get(INSTANCE_ENV) or "").strip()
    if given:
        return valid_instance_id(given)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"
    return f"{host}-{port}"


def serve(settings: Settings, port: int = 8080, host: str = "127.0.0.1", api_only: bool = False,
          state_dir: str | None = None, tokens: ApiTokens | None = None, instance_id: str | None = None) -> None:
    """Run the API under uvicorn with the order-processor (instance ``instance_id``, default
    ``instance_id_for(port)``), the view of every order and the other groups in background threads.

    Several ``serve`` processes on one broker (one machine or many, same bootstrap list) share the
    order-processor group's partitions; each one's view holds every order, so any answers any order.

    The outbox is re-sent by itself whenever the broker answers again. SIGINT or SIGTERM stops
    it gracefully: no new connections, requests in progress finish (at most ``GRACE_SECONDS``),
    then the relay stops, the consumers commit what they finished and close, and the producer
    flushes; then it returns (the command exits 0). ``tokens`` default to ``ORDER_SYSTEM_API_TOKENS``.
    """
    from .auth import ENV, ApiTokens
    from ..local.broker import answers_metadata
    from ..kafka.consumer import run_groups
    from ..services.groups import runner_for, standard_groups
    from ..kafka.outbox import Outbox, OutboxRelay
    from ..kafka.producer import OrderProducer
    from ..kafka.topics import create_topics
    from ..state.view import OrderView

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens = tokens if tokens is not None else ApiTokens.from_env()
    if tokens is None:
        log.warning("authentication is off: anyone who reaches port %d can act on any order (set %s)", port, ENV)
    else:
        log.info("authentication is on: %r", tokens)
    create_topics(settings)
    instance_id = instance_id or instance_id_for(port)
    log.info("instance id %s", instance_id)
    processor, notifications, analytics = standard_groups(state_dir, instance_id=instance_id)
    groups = [processor] if api_only else [processor, notifications, analytics]
    outbox = Outbox()
    producer = OrderProducer(settings, extra_config={"delivery.timeout.ms": DELIVERY_TIMEOUT_MS}, outbox=outbox)
    try:
        with run_groups(*(runner_for(group, settings) for group in groups)) as runners, \
                OrderView(settings).start(timeout=VIEW_LOAD_SECONDS) as view:
            relay = OutboxRelay(
                producer,
                reachable=lambda: answers_metadata(settings.bootstrap_servers, timeout=2.0,
                                                   client_options=dict(settings.client_options)),
            ).start()
            app = create_app(settings, producer, view, outbox=outbox, tokens=tokens,
                             groups=tuple(g.group_id for g in groups), publish_timeout=PUBLISH_BOUND)
            try:
                _uvicorn_server(app, host, port).run()
            finally:
                relay.stop(timeout=2.0)
                log.info("intake stopped; committing offsets and closing %d consumer(s)", len(runners))
        log.info("consumers closed: %s", ", ".join(f"{r.name} {r.processed} records" for r in runners))
    finally:
        try:
            producer.close(timeout=2.0)
            log.info("producer flushed and closed")
        except PublishError as exc:  # the broker is away: those events' requests were answered 503
            log.warning("producer closed with undelivered records: %s", exc)
