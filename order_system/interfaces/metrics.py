"""Prometheus metrics: what the consumer groups, the REST API and the outbox are doing.

The counters live in one process-wide registry (``bootstrap.REGISTRY``) and are moved by the
hooks ``bootstrap`` gives every runner: records handled, retried and dead-lettered per group;
``HttpMetrics`` times every request per route template (``/api/orders/{order_id}``, never the
raw path, so the number of series stays bounded whatever clients send). Lag and the outbox size
are read when scraped.

``registry_for(settings, groups, outbox)`` is what one endpoint shows: the shared counters plus
its own lag and outbox gauges. ``serve`` adds ``/metrics`` to the API (``HttpMetrics``); its
groups run in child processes (``children.py``), which count in prometheus_client's multiprocess
files, summed when scraped (``ChildCounts``). ``order-system consume --metrics-port N`` serves its
own counters on a port of its own (``serve_metrics``).
``read_metrics(url)`` parses what an endpoint shows into a table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from ..bootstrap import DEAD_LETTERED, HANDLED, REGISTRY, RETRIED
from ..services.stages import recording, server_timing

if TYPE_CHECKING:
    from ..config import Settings
    from ..state.outbox import Outbox

log = logging.getLogger("order_system.interfaces.metrics")
request_log = logging.getLogger("order_system.interfaces.api.requests")  # a line per request

HTTP_SECONDS = Histogram("order_system_http_request_duration_seconds",
                         "REST API requests by method, route template and status; _count is the request count",
                         ["method", "route", "status"], registry=REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route answered (404s of unknown paths)
METRICS_PATH = "/metrics"


# ---- gauges read when scraped ------------------------------------------------------------------


class LagCollector:
    """``order_system_consumer_lag{group,topic,partition}``: records each group has yet to commit.

    Read from the broker when scraped, at most once a second (scrapes in between get the last
    reading), so a client hammering ``/metrics`` cannot hammer Kafka.
    When the broker does not answer, the lag series are left out and
    ``order_system_consumer_lag_available`` is 0.
    """

    def __init__(self, settings: Settings, groups: Sequence[str]) -> None:
        self.settings, self.groups = settings, list(groups)
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._rows: list[dict[str, Any]] | None = None
        self._warned_at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        from ..kafka.lag import consumer_lag

        with self._lock:
            if time.monotonic() - self._read_at >= 1.0:
                try:
                    frame = consumer_lag(self.settings, self.groups, timeout=2.0)
                    self._rows = frame.to_dict(orient="records")
                except Exception as exc:  # broker down or slow: report "unavailable", never fail the scrape
                    self._rows = None
                    if time.monotonic() - self._warned_at >= 10:
                        self._warned_at = time.monotonic()
                        log.warning("could not read consumer lag from %s: %s", self.settings.bootstrap_servers, exc)
                self._read_at = time.monotonic()
            rows = self._rows
        yield GaugeMetricFamily("order_system_consumer_lag_available",
                                "1 when the lag below could be read from the broker", value=int(rows is not None))
        lag = GaugeMetricFamily("order_system_consumer_lag",
                                "Records in the partition after the group's committed offset",
                                labels=["group", "topic", "partition"])
        for row in rows or ():
            lag.add_metric([row["group"], row["topic"], str(row["partition"])], row["lag"])
        yield lag


class ChildCounts:
    """The records each group handled, retried and dead-lettered, as counted by serve's children.

    ``serve`` gives its child processes a directory of their own (``PROMETHEUS_MULTIPROC_DIR``),
    so their counters live in prometheus_client's multiprocess files there, one file per process.
    A scrape sums the files per group: a restarted child goes on from the total of the one before
    it. A group that has counted nothing yet shows 0.
    """

    def __init__(self, path: Path, groups: Sequence[str]) -> None:
        self.path, self.groups = path, list(groups)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        found = {metric.name: metric for metric in MultiProcessCollector(None, str(self.path)).collect()}
        for counter in (HANDLED, RETRIED, DEAD_LETTERED):
            [described] = counter.describe()
            totals = dict.fromkeys(self.groups, 0.0)
            for sample in getattr(found.get(described.name), "samples", ()):
                group = sample.labels["group"]
                totals[group] = totals.get(group, 0.0) + sample.value
            family = CounterMetricFamily(described.name, described.documentation, labels=["group"])
            for group, total in totals.items():
                family.add_metric([group], total)
            yield family


def registry_for(settings: Settings, groups: Iterable[str], outbox: Outbox | None = None,
                 counted_in: Path | None = None) -> CollectorRegistry:
    """What one endpoint shows: the shared counters, the lag of ``groups``, the outbox size.

    With ``counted_in`` (serve), the groups run in child processes that count in the
    multiprocess files there (``ChildCounts``); this process adds its HTTP requests."""
    registry = CollectorRegistry(auto_describe=False)
    groups = list(groups)
    if counted_in is None:
        registry.register(REGISTRY)  # a registry is a collector too: the process-wide counters, forwarded
        for group in groups:  # shown as 0 from the start, not only after the first record
            for counter in (HANDLED, RETRIED, DEAD_LETTERED):
                counter.labels(group)
    else:
        registry.register(ChildCounts(counted_in, groups))
        registry.register(HTTP_SECONDS)
    registry.register(LagCollector(settings, groups))
    if outbox is not None:  # events kept because the broker did not acknowledge them
        Gauge("order_system_outbox_records", "Events waiting in the outbox to be sent again",
              registry=registry).set_function(lambda: len(outbox))
    return registry


# ---- exposing them ----------------------------------------------------------------------------


class HttpMetrics:
    """ASGI middleware: answers ``GET /metrics`` itself, times every other request and logs a line
    per request on ``request_log`` when that logger is on. Each answer's ``Server-Timing`` header
    gives its stages (``services/stages.py``: lock, view, processed, publish, verdict, shown) and its total.

    Added last in ``create_app``, it sits outside the routes (so ``/metrics`` is not in the
    OpenAPI schema) and outside any authentication added before it.
    """

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app, self.registry = app, registry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._expose(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                stages["total"] = time.perf_counter() - began  # where a command's time went, for its client
                message["headers"] = [*message.get("headers", []), (b"server-timing", server_timing(stages).encode())]
            await send(message)

        try:
            with recording() as stages:
                await self.app(scope, receive, record_status)
        finally:
            seconds = time.perf_counter() - began
            HTTP_SECONDS.labels(_method(scope), _route(scope), str(status)).observe(seconds)
            request_log.info("%s %s -> %d in %.1f ms", scope["method"], scope["path"], status, seconds * 1000)

    async def _expose(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from anyio import to_thread

        began = time.perf_counter()
        body = await to_thread.run_sync(generate_latest, self.registry)  # may ask the broker for lag
        await Response(body, media_type=CONTENT_TYPE_LATEST)(scope, receive, send)  # uvicorn drops a HEAD's body
        HTTP_SECONDS.labels(scope["method"], METRICS_PATH, "200").observe(time.perf_counter() - began)


def _method(scope: dict[str, Any]) -> str:
    method = scope.get("method", "")
    return method if method in METHODS else "OTHER"


def _route(scope: dict[str, Any]) -> str:
    """The template of the route that answered, e.g. ``/api/orders/{order_id}``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def serve_metrics(port: int, registry: CollectorRegistry, host: str = "127.0.0.1") -> tuple[str, Any]:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread (port 0: any free one).

    Returns the URL and the server (``server.shutdown()`` stops it). A port that is taken or
    not allowed raises ``ConfigError`` with what to do.
    """
    from prometheus_client import start_http_server

    from ..domain.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics port {port} is not a port number; use 1-65535, or 0 for any free port")
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                          "choose another --metrics-port") from exc
    return f"http://{host}:{server.server_port}{METRICS_PATH}", server


# ---- reading them -----------------------------------------------------------------------------


def parse_metrics(text: str) -> pd.DataFrame:
    """Prometheus text as a table: one row per sample (name, labels as columns, value).

    Only this package's metrics (``order_system_*``); ``*_created`` timestamps are left out.
    """
    rows = [{"name": sample.name, **sample.labels, "value": sample.value}
            for family in text_string_to_metric_families(text) if family.name.startswith("order_system_")
            for sample in family.samples if not sample.name.endswith("_created")]
    return pd.DataFrame(rows)


def sample_value(frame: pd.DataFrame, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels match (0 when there is none)."""
    if frame.empty:
        return 0.0
    rows = frame[frame["name"] == name]
    for label, wanted in labels.items():
        rows = rows[rows[label] == wanted] if label in rows else rows.iloc[0:0]
    return float(rows["value"].sum())


def read_metrics(url: str, timeout: float = 10.0) -> pd.DataFrame:
    """Scrape ``url`` once and parse it with ``parse_metrics``."""
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a URL the caller chose
        return parse_metrics(answer.read().decode())


def wait_for_metrics(url: str, ready: Callable[[pd.DataFrame], bool], timeout: float = 60.0) -> pd.DataFrame:
    """Scrape ``url`` until ``ready(frame)`` holds and return that scrape; ``TimeoutError`` otherwise.

    An endpoint that does not answer yet is tried again until the timeout.
    """
    deadline = time.monotonic() + timeout
    frame, problem = pd.DataFrame(), ""
    while True:
        try:
            frame, problem = read_metrics(url), ""
            if ready(frame):
                return frame
        except OSError as exc:  # not listening yet, or the connection broke
            problem = f"{url} did not answer: {exc}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics at {url} not as expected within {timeout:.0f}s. {problem}\n"
                               f"{frame.to_string()}")
        time.sleep(0.2)  # the numbers change in other threads, processes and on the broker: poll
