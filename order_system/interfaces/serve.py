"""``order-system serve``: the REST API under uvicorn, its view and producer in one process, and each
consumer group in a child process of its own.

Like the tutorial's Spring Boot application (``./gradlew bootRun``): one command runs the API
and the consumer groups. The API's process holds what answers requests: the view of every order,
the producer and its outbox relay (wired in ``bootstrap.api_backend``), and uvicorn. Each group
runs as ``order-system consume --group G`` in a child that ``children.Children`` starts, watches
(a child that ends on its own is restarted, within bounds) and stops, so the groups do not share
the API's GIL. The children count their records in files that ``/metrics`` sums.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import create_app
from .children import GROUPS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import Settings

log = logging.getLogger("order_system.interfaces.api")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 5.0  # how long a stop waits for requests in progress before cutting them
VIEW_LOAD_SECONDS = 300.0  # how long serve may take to read all of order-state before it listens


def serve(settings: Settings, port: int = 8080, host: str = "127.0.0.1", api_only: bool = False,
          state_dir: str | None = None, instance_id: str | None = None, log_records: str = "summary") -> None:
    """Run the API under uvicorn, with the view of every order, and the three groups in child
    processes (with ``api_only``, the order-processor only). The order-processor's instance id is
    ``instance_id``, by default ``default_instance_id(port=port)``.

    Several ``serve`` processes on one broker (one machine or many, same bootstrap list) share the
    order-processor group's partitions; each one's view holds every order, so any answers any order.

    The outbox is re-sent by itself whenever the broker answers again. SIGINT or SIGTERM stops
    it gracefully: no new connections, requests in progress finish (at most ``GRACE_SECONDS``),
    the relay stops, the producer flushes, then every child gets SIGTERM and commits what it
    finished; then it returns (the command exits 0). A child that keeps ending on its own stops
    serve with ``GroupFailed`` (exit 1). ``ORDER_SYSTEM_API_TOKENS`` turns authentication on.
    """
    from ..bootstrap import api_backend, fewer_collections
    from ..domain.errors import GroupFailed
    from ..kafka.topics import create_topics
    from ..services.processor import default_instance_id
    from .auth import ENV, ApiTokens
    from .children import Children, consume_command

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens = ApiTokens.from_env()
    if tokens is None:
        log.warning("authentication is off: anyone who reaches port %d can act on any order (set %s)", port, ENV)
    else:
        log.info("authentication is on: %r", tokens)
    create_topics(settings)
    instance_id = instance_id or default_instance_id(port=port)
    log.info("instance id %s", instance_id)
    groups = GROUPS[:1] if api_only else GROUPS
    fewer_collections()  # the view holds every order (this was set here by the processor's runner before)
    commands = {group: consume_command(group, instance_id=instance_id, state_dir=state_dir, log_records=log_records)
                for group in groups}
    with tempfile.TemporaryDirectory(prefix="order-system-counts-") as counts:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
               "ORDER_SYSTEM_TOPIC": settings.topic, "PROMETHEUS_MULTIPROC_DIR": counts}
        with Children(commands, env) as children, \
                api_backend(settings, (), view_timeout=VIEW_LOAD_SECONDS) as backend:
            app = create_app(settings, backend.producer, backend.view, outbox=backend.outbox, tokens=tokens,
                             groups=groups, counted_in=Path(counts))
            server = _uvicorn_server(app, host, port)
            children.on_give_up = lambda: setattr(server, "should_exit", True)  # uvicorn stops as on SIGTERM
            if children.failed is None:  # checked after on_give_up is set: a failure before it is seen here
                server.run()
    if children.failed is not None:
        raise GroupFailed(children.failed)


def _uvicorn_server(app: FastAPI, host: str, port: int) -> Any:
    """A uvicorn server that stops on SIGINT/SIGTERM and then returns to its caller.

    uvicorn's own ``capture_signals`` raises the signal again once the server is down, which
    kills the process (exit 143 for SIGTERM) before the caller can stop the relay, flush the
    producer and stop the children (which commit their offsets). This subclass only restores the
    previous handlers.
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
