"""The one place that wires the tutorial's groups to Kafka runners, with the hooks they report to.

A group (``services/``) is a plain object with a ``group_id`` and a ``handlers()`` table (status
-> handler); it knows nothing of Kafka. ``runner_for`` gives it a runner: a ``ConsumerRunner``
(at least once, failures retried in the style the group's ``retry_style`` names), or for the
``OrderProcessor`` a ``TransactionalRunner`` (exactly once, its partitions' state restored from
``order-state`` when they are assigned). Adding a fourth group is one more small class; nothing
here changes.

Every runner made here counts what it does in the process's Prometheus counters (``COUNTS``,
exposed by ``interfaces/metrics.py``): the runners only call the hooks they were given. In a
child process of ``serve`` those counters live in prometheus_client's multiprocess files, which
serve's ``/metrics`` sums. ``consume`` (and so each of serve's children), the notebooks, the
benchmarks and the tests all wire their groups here. ``api_backend`` is what ``order-system
serve`` runs behind its HTTP routes, in its own process: the view, the producer and the outbox
relay (serve passes no groups; a test may pass some, to run them in its own process).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from .kafka.records import Handler
from .kafka.runner_thread import RunnerHooks
from .services.analytics import AnalyticsService
from .services.notifications import NotificationService
from .services.processor import OrderProcessor

if TYPE_CHECKING:
    from .config import Settings
    from .domain.events import OrderStatus
    from .kafka.consumer import ConsumerRunner
    from .kafka.ordering import OrderedProducer
    from .kafka.retry import FailurePolicy
    from .kafka.transactions import TransactionalRunner
    from .state.outbox import Outbox
    from .state.view import OrderView

log = logging.getLogger("order_system.bootstrap")
GC_YOUNG_THRESHOLD = 10_000  # see fewer_collections()
# serve's producer: a record not acknowledged within this is kept in the outbox (the API's
# publish bound, a little longer, answers 503 first: interfaces/api.py)
DELIVERY_TIMEOUT_MS = 15_000


class Group(Protocol):
    """What a consumer group contributes: its id and one handler per status."""

    group_id: str

    def handlers(self) -> Mapping[OrderStatus, Handler]: ...


# ---- the counters every runner made here reports to --------------------------------------------

REGISTRY = CollectorRegistry(auto_describe=True)
HANDLED = Counter("order_system_records_handled", "Records a group's handler finished successfully",
                  ["group"], registry=REGISTRY)
RETRIED = Counter("order_system_records_retried", "Failed handler attempts that will be tried again",
                  ["group"], registry=REGISTRY)
DEAD_LETTERED = Counter("order_system_records_dead_lettered", "Records a group sent to the dead-letter topic",
                        ["group"], registry=REGISTRY)


class Counts(RunnerHooks):
    """Runner hooks that move the Prometheus counters above."""

    def handled(self, group: str, count: int = 1) -> None:
        HANDLED.labels(group).inc(count)

    def retried(self, group: str, count: int = 1) -> None:
        RETRIED.labels(group).inc(count)

    def dead_lettered(self, group: str, count: int = 1) -> None:
        DEAD_LETTERED.labels(group).inc(count)


COUNTS = Counts()


# ---- wiring -----------------------------------------------------------------------------------


def runner_for(group: Group, settings: Settings, *, failure_policy: FailurePolicy | None = None,
               **options: Any) -> ConsumerRunner | TransactionalRunner:
    """A runner that feeds ``group``'s handlers from the settings' topic (or the group's own
    ``input_topic``), counting in ``COUNTS``.

    Failures are handled in the style the group names in ``retry_style`` (retry topics when
    it names none), unless ``failure_policy`` is given. The ``OrderProcessor`` gets its
    transactional runner (``processor_runner``); it retries in place and takes no policy.
    """
    from .kafka.consumer import ConsumerRunner
    from .kafka.retry import policy_for

    if isinstance(group, OrderProcessor):
        if failure_policy is not None:
            raise ValueError("the order-processor retries in place inside its transactional loop and takes no "
                             "failure_policy; set OrderProcessor(attempts=..., backoff=...) instead")
        return processor_runner(group, settings, **options)
    policy = failure_policy or policy_for(getattr(group, "retry_style", "topics"))
    input_topic = getattr(group, "input_topic", None)
    if input_topic is not None:  # notification-service reads the verdicts, through its own decoder
        options.setdefault("topics", [input_topic(settings), *policy.extra_topics(settings)])
        options.setdefault("decoder", group.decode)  # type: ignore[attr-defined]
    options.setdefault("hooks", COUNTS)
    return ConsumerRunner(settings, group.group_id, group.handlers(), failure_policy=policy, **options)


def processor_runner(processor: OrderProcessor, settings: Settings, *, require_key: bool = True,
                     name: str | None = None, extra_config: Mapping[str, Any] | None = None,
                     batch_size: int | None = None, hooks: RunnerHooks = COUNTS) -> TransactionalRunner:
    """The order-processor's exactly-once runner: reads ``order-events`` read_committed and
    writes verdicts, state, effects, dead letters and its offsets in one transaction per batch.
    Its transactional id is ``order-processor-<instance id>``. On assignment each partition's
    orders are restored from ``order-state`` before any of its records is processed."""
    from .kafka.changelog_reader import restore_orders
    from .kafka.transactions import BATCH_SIZE, TransactionalRunner

    fewer_collections()

    def on_assign(partitions: list[tuple[str, int]]) -> None:
        numbers = [p for topic, p in partitions if topic == settings.topic]
        began = time.monotonic()
        restored = restore_orders(settings, numbers)
        processor.restore(restored)
        log.info("[%s] restored %d orders of partitions %s from %s in %.2fs", processor.group_id,
                 sum(len(o) for o in restored.values()), numbers, settings.state_topic, time.monotonic() - began)

    def on_revoke(partitions: list[tuple[str, int]]) -> None:
        processor.forget(p for topic, p in partitions if topic == settings.topic)

    return TransactionalRunner(
        settings, processor.group_id, processor.transactional_id,
        lambda records, sleep: processor.process(records, settings, sleep, require_key=require_key),
        name=name, on_assign=on_assign, on_revoke=on_revoke, extra_config=extra_config,
        batch_size=batch_size or BATCH_SIZE, hooks=hooks,
    )


def fewer_collections() -> None:
    """Let Python's cyclic garbage collector look at young objects every 10,000 allocations
    instead of 700 (process-wide; a higher threshold already set is kept).

    The processor keeps every order in memory (about 25 tracked objects per order of four
    events) and a batch makes a few thousand short-lived objects. At the default threshold
    those get promoted while the batch is still alive, and each such wave triggers a full
    collection, which walks every order held: that was 40 % of the processor's CPU time
    (benchmarks/README.md). Garbage cycles are still freed, just a little later."""
    young, older, oldest = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # 0: the application turned the collector off; leave it
        gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def standard_groups(state_dir: str | Path | None = None, *, instance_id: str | None = None,
                    ) -> tuple[OrderProcessor, NotificationService, AnalyticsService]:
    """The tutorial's three groups; with ``state_dir`` the notification-service's store is a
    file there. The order-processor keeps its state in Kafka (``order-state``), never only on
    disk; ``instance_id`` names it (default ``ORDER_SYSTEM_INSTANCE_ID`` or the host name)."""
    return (OrderProcessor(instance_id=instance_id), _notification_service(state_dir), AnalyticsService())


def standard_group(group_id: str, state_dir: str | Path | None = None, *,
                   instance_id: str | None = None) -> OrderProcessor | NotificationService | AnalyticsService:
    """One of ``standard_groups`` by its id (what ``order-system consume --group`` runs), the
    others not made: the order-processor's process opens no notification store."""
    makers = {OrderProcessor.group_id: lambda: OrderProcessor(instance_id=instance_id),
              NotificationService.group_id: lambda: _notification_service(state_dir),
              AnalyticsService.group_id: AnalyticsService}
    return makers[group_id]()


def _notification_service(state_dir: str | Path | None) -> NotificationService:
    if state_dir is None:
        return NotificationService()
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    return NotificationService(Path(state_dir) / "notification-service.db")


# ---- what `order-system serve` runs behind its routes -------------------------------------------


@dataclass
class Backend:
    """The running parts an API instance answers from."""

    producer: OrderedProducer
    view: OrderView
    outbox: Outbox
    runners: tuple[ConsumerRunner | TransactionalRunner, ...]
    groups: tuple[Group, ...]


@contextmanager
def api_backend(settings: Settings, groups: tuple[Group, ...], *, outbox: Outbox | None = None,
                view_timeout: float = 300.0, delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS) -> Iterator[Backend]:
    """Start ``groups``' runners (serve passes none: its groups run in child processes), the view
    of every order (read to its end first, at most ``view_timeout`` s), a producer that keeps what
    the broker does not acknowledge within ``delivery_timeout_ms`` in ``outbox`` (default: the
    user's), and the relay that resends it once the broker answers again.

    On exit, in this order: the relay stops, the runners commit what they finished and close, the
    view stops, and the producer flushes (what it cannot deliver stays in the outbox)."""
    from .domain.errors import PublishError
    from .kafka.consumer import run_groups
    from .kafka.ordering import OrderedProducer
    from .kafka.reachability import answers_metadata
    from .state.outbox import Outbox, OutboxRelay
    from .state.view import OrderView

    outbox = outbox if outbox is not None else Outbox()
    producer = OrderedProducer(settings, outbox, extra_config={"delivery.timeout.ms": delivery_timeout_ms})
    try:
        with run_groups(*(runner_for(group, settings) for group in groups)) as runners, \
                OrderView(settings).start(timeout=view_timeout) as view:
            relay = OutboxRelay(producer, reachable=lambda: answers_metadata(
                settings.bootstrap_servers, timeout=2.0, client_options=dict(settings.client_options))).start()
            try:
                yield Backend(producer, view, outbox, runners, groups)
            finally:
                relay.stop(timeout=2.0)
                if runners:
                    log.info("intake stopped; committing offsets and closing %d consumer(s)", len(runners))
        if runners:
            log.info("consumers closed: %s", ", ".join(f"{r.name} {r.processed} records" for r in runners))
    finally:
        try:
            producer.close(timeout=2.0)
            log.info("producer flushed and closed")
        except PublishError as exc:  # the broker is away: those events' requests were answered 503
            log.warning("producer closed with undelivered records: %s", exc)
