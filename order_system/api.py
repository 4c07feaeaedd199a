"""The REST front door: each request becomes an event; answers come at once.

``create_app`` receives everything it uses (settings, producer, the order-processor's view,
an outbox), so nothing connects at import. ``serve`` wires real ones and runs uvicorn with the
consumer groups in background threads, like the tutorial's single Spring Boot application.

Error codes: 422 bad input, 404 unknown order, 403 a customerId that is not the order's
(the caller may not act on someone else's order), 409 a transition the state machine
forbids, 503 broker unreachable (the event is kept in the outbox and sent later).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from .commands import OrderCommands
from .errors import InvalidTransition, NotYourOrder, OrderSystemError, PublishError, StillProcessing, UnknownOrder
from .events import OrderStatus

if TYPE_CHECKING:
    from .config import Settings
    from .groups import OrderProcessor
    from .outbox import Outbox
    from .producer import OrderProducer

log = logging.getLogger("order_system.api")

ACTIONS: dict[str, OrderStatus] = {
    "pay": OrderStatus.PAID,
    "ship": OrderStatus.SHIPPED,
    "deliver": OrderStatus.DELIVERED,
    "cancel": OrderStatus.CANCELLED,
}
CustomerId = Annotated[str, Field(min_length=1, max_length=64)]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateOrder(_Camel):
    customer_id: CustomerId

    @field_validator("customer_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class ApiError(Exception):
    """An answer other than 2xx, with a clear message and optional details."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


STATUS_OF: dict[type[Exception], int] = {
    UnknownOrder: 404, NotYourOrder: 403, InvalidTransition: 409, StillProcessing: 503, PublishError: 503,
}


def _error(status: int, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


def create_app(
    settings: Settings,
    producer: OrderProducer,
    processor: OrderProcessor,
    *,
    outbox: Outbox | None = None,
    groups: tuple[str, ...] = ("order-processor", "notification-service", "analytics-service"),
    publish_timeout: float = 10.0,
    view_timeout: float = 10.0,
) -> FastAPI:
    """The FastAPI application, built from the collaborators it is given."""
    app = FastAPI(title="order-system", summary="An event-driven order system on Apache Kafka")
    commands = OrderCommands(producer, processor, outbox, publish_timeout, view_timeout)
    app.state.commands = commands

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        log.info("%s %s -> %d in %.1f ms", request.method, request.url.path, response.status_code,
                 (time.perf_counter() - began) * 1000)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, **exc.details)

    @app.exception_handler(OrderSystemError)
    async def domain_error(request: Request, exc: OrderSystemError) -> JSONResponse:
        details: dict[str, Any] = {}
        if order_id := getattr(exc, "order_id", None):
            details["orderId"] = order_id
        if isinstance(exc, InvalidTransition):
            details["currentStatus"] = getattr(exc.current, "value", None)
            details["requestedStatus"] = getattr(exc.requested, "value", None)
        status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 500)
        return _error(status, str(exc), **details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(problems), problems=problems)

    @app.post("/api/orders", status_code=201)
    def create_order(body: CreateOrder) -> dict[str, Any]:
        event, delivery = commands.create(body.customer_id)
        return {"orderId": event.order_id, "message": "Order accepted; it is being processed",
                "status": event.status.value, "partition": delivery.partition, "offset": delivery.offset}

    @app.post("/api/orders/{order_id}/{action}", status_code=202)
    def advance_order(order_id: str, action: str, customer_id: Annotated[str, Query(alias="customerId", min_length=1, max_length=64)]) -> dict[str, Any]:
        if not customer_id.strip():
            raise ApiError(422, "customerId: must not be blank")
        target = ACTIONS.get(action)
        if target is None:
            raise ApiError(404, f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        event, delivery = commands.advance(order_id, customer_id.strip(), target)
        return {"orderId": order_id, "status": target.value, "version": event.version,
                "message": f"{action} accepted", "partition": delivery.partition, "offset": delivery.offset}

    @app.get("/api/orders/{order_id}")
    def get_order(order_id: str) -> dict[str, Any]:
        order = processor.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return {"orderId": order.order_id, "customerId": order.customer_id, "status": order.status.value,
                "version": order.version, "history": [e.to_dict() for e in order.history]}

    @app.get("/api/orders")
    def list_orders(
        status: OrderStatus | None = None,
        customer_id: Annotated[str | None, Query(alias="customerId", max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        rows = processor.store.summaries(status=status, customer_id=customer_id, limit=limit, offset=offset)
        orders = [{"orderId": r["order_id"], "customerId": r["customer_id"], "status": r["status"],
                   "version": r["version"], "updatedAt": r["updated_at"]} for r in rows]
        return {"orders": orders, "limit": limit, "offset": offset, "count": len(orders)}

    @app.get("/health")
    def health() -> JSONResponse:
        from .broker import answers_metadata
        from .lag import consumer_lag

        up = answers_metadata(settings.bootstrap_servers, timeout=3.0, client_options=dict(settings.client_options))
        body: dict[str, Any] = {"broker": "up" if up else "down", "bootstrap": settings.bootstrap_servers,
                                "outbox": len(outbox) if outbox is not None else None}
        if up:
            frame = consumer_lag(settings, groups)
            body["lag"] = frame.to_dict(orient="records")
        return JSONResponse(body, status_code=200 if up else 503)

    from .metrics import HttpMetrics, registry_for  # added last: outermost, so /metrics needs no auth
    app.add_middleware(HttpMetrics, registry=registry_for(settings, groups, outbox))
    return app


# ---- the `order-system serve` command ----------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 5.0  # how long a stop waits for requests in progress before cutting them


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

    return Server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                 timeout_graceful_shutdown=int(GRACE_SECONDS)))


def serve(settings: Settings, port: int = 8080, host: str = "127.0.0.1", api_only: bool = False,
          state_dir: str | None = None) -> None:
    """Run the API under uvicorn with the consumer groups in background threads.

    The outbox is re-sent by itself whenever the broker answers again. SIGINT or SIGTERM stops
    it gracefully: no new connections, requests in progress finish (at most ``GRACE_SECONDS``),
    then the relay stops, the consumers commit what they finished and close, and the producer
    flushes; then it returns (the command exits 0).
    """
    from .broker import answers_metadata
    from .consumer import run_groups
    from .groups import runner_for, standard_groups
    from .outbox import Outbox, OutboxRelay
    from .producer import OrderProducer
    from .topics import create_topics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    create_topics(settings)
    processor, notifications, analytics = standard_groups(state_dir)
    groups = [processor] if api_only else [processor, notifications, analytics]
    outbox = Outbox()
    producer = OrderProducer(settings, extra_config={"delivery.timeout.ms": 8000}, outbox=outbox)
    try:
        with run_groups(*(runner_for(group, settings) for group in groups)) as runners:
            relay = OutboxRelay(
                producer,
                reachable=lambda: answers_metadata(settings.bootstrap_servers, timeout=2.0,
                                                   client_options=dict(settings.client_options)),
            ).start()
            app = create_app(settings, producer, processor, outbox=outbox,
                             groups=tuple(g.group_id for g in groups), publish_timeout=9.0)
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
