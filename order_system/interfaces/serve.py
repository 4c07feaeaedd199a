"""``order-system serve``: the REST API under uvicorn, with its groups and its view, in one process.

Like the tutorial's Spring Boot application (``./gradlew bootRun``): one command runs the API
and the consumer groups. What runs behind the routes is wired in ``bootstrap.api_backend``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .api import create_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import Settings

log = logging.getLogger("order_system.interfaces.api")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 5.0  # how long a stop waits for requests in progress before cutting them
VIEW_LOAD_SECONDS = 300.0  # how long serve may take to read all of order-state before it listens


def serve(settings: Settings, port: int = 8080, host: str = "127.0.0.1", api_only: bool = False,
          state_dir: str | None = None, instance_id: str | None = None) -> None:
    """Run the API under uvicorn with the order-processor (instance ``instance_id``, default
    ``default_instance_id(port=port)``), the view of every order and the other groups in threads.

    Several ``serve`` processes on one broker (one machine or many, same bootstrap list) share the
    order-processor group's partitions; each one's view holds every order, so any answers any order.

    The outbox is re-sent by itself whenever the broker answers again. SIGINT or SIGTERM stops
    it gracefully: no new connections, requests in progress finish (at most ``GRACE_SECONDS``),
    then the relay stops, the consumers commit what they finished and close, and the producer
    flushes; then it returns (the command exits 0). ``ORDER_SYSTEM_API_TOKENS`` turns authentication on.
    """
    from ..bootstrap import api_backend, standard_groups
    from ..kafka.topics import create_topics
    from ..services.processor import default_instance_id
    from .auth import ENV, ApiTokens

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens = ApiTokens.from_env()
    if tokens is None:
        log.warning("authentication is off: anyone who reaches port %d can act on any order (set %s)", port, ENV)
    else:
        log.info("authentication is on: %r", tokens)
    create_topics(settings)
    instance_id = instance_id or default_instance_id(port=port)
    log.info("instance id %s", instance_id)
    processor, notifications, analytics = standard_groups(state_dir, instance_id=instance_id)
    groups = (processor,) if api_only else (processor, notifications, analytics)
    with api_backend(settings, groups, view_timeout=VIEW_LOAD_SECONDS) as backend:
        app = create_app(settings, backend.producer, backend.view, outbox=backend.outbox, tokens=tokens,
                         groups=tuple(g.group_id for g in groups))
        _uvicorn_server(app, host, port).run()


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

    return Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,  # HttpMetrics logs
                                 timeout_graceful_shutdown=int(GRACE_SECONDS)))
