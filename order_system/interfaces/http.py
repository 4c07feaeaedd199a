"""HTTP plumbing of the REST API: the error shape, and a small ASGI middleware.

Every error body is ``{"error": "...", ...}``: ``install_error_handlers`` maps the routes' own
refusals (``HTTPException``), the package's exceptions (``STATUS_OF``), request validation
(422 naming each field), FastAPI's routing errors (404, 405 with ``Allow``) and anything else
(500, logged) to that shape. ``BodyLimit`` refuses a body over ``MAX_BODY_BYTES`` with 413
before reading it in full (``metrics.HttpMetrics`` times and logs every request).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..domain.errors import (CommandRejected, IdempotencyKeyReused, InvalidTransition, NotYourOrder, OrderSystemError,
                             PublishError, StillProcessing, UnknownOrder)
from .schemas import MAX_BODY_BYTES, NOT_BLANK, RETRY_AFTER_SECONDS, ErrorBody

log = logging.getLogger("order_system.interfaces.api")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {400: "The request could not be read", 401: "Missing or unknown bearer token",
               403: "The customerId is not the caller's (or the order's)", 404: "No such order",
               409: "The state machine forbids this transition, the order-processor rejected the command "
                    "(another command for the order won), or the Idempotency-Key already made another step "
                    "of this order",
               413: f"The request body is larger than {MAX_BODY_BYTES} bytes",
               422: "Invalid input",
               503: "The broker is unreachable (the event is kept), or the view or the order-processor did "
                    "not catch up in time (see Retry-After); repeat with the same Idempotency-Key to learn "
                    "the outcome"}
    responses: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": meaning[code]}
                                                  for code in codes}
    if 503 in responses:
        responses[503]["headers"] = {"Retry-After": {"description": "Seconds to wait before trying again",
                                                     "schema": {"type": "integer"}}}
    return responses


STATUS_OF: dict[type[Exception], int] = {
    UnknownOrder: 404, NotYourOrder: 403, InvalidTransition: 409, CommandRejected: 409, StillProcessing: 503,
    PublishError: 503, IdempotencyKeyReused: 409,
}


def _problem(error: Any) -> str:
    """``field: message`` with pydantic's message, plainer where it would quote a regular expression."""
    where = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NOT_BLANK:
        return f"{where}: must not be blank"
    return f"{where}: {error['msg']}"


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before reading them in full.

    A Content-Length over the limit is refused at once; a body without one (chunked) is read
    only up to the limit, then handed on, or refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit
        self.refuse = error_response(413, f"the request body is larger than {limit} bytes", {"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "Content-Length is not a number")(scope, receive, send)
            elif int(length) > self.limit:
                await self.refuse(scope, receive, send)
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
                await self.refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route of this path answers (for ``Allow``), OPTIONS included."""
    methods = {"OPTIONS"}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the ``{"error": ...}`` shape (see the module docstring)."""

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
        return error_response(status, str(exc), headers, **details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        return error_response(422, "; ".join(problems), problems=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """The routes' refusals, and FastAPI's and Starlette's own errors (400, routing 404, 405)."""
        if exc.status_code == 405:
            allow = allowed_methods(app, request.scope)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            return error_response(405, f"{request.method} is not allowed here; use {allow}", {"Allow": allow})
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal server error; the server log has the details")

