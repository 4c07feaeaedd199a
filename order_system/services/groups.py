"""The three consumer groups of the tutorial, each with its own logic and its own state.

A group here is a plain object with a ``group_id`` and a ``handlers()`` table (status ->
handler). It knows nothing of Kafka: ``runner_for`` wires it to a ``ConsumerRunner``, so adding
a fourth group means writing one more small class, and no existing module changes.

The ``OrderProcessor`` is wired differently: to a ``TransactionalRunner`` (exactly once, state
restored from ``order-state`` when a partition is assigned), with the same runner surface.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..domain.events import OrderEvent, OrderStatus
from .analytics import AnalyticsService
from .notifications import NotificationService
from .processor import OrderProcessor

if TYPE_CHECKING:
    from ..config import Settings
    from ..kafka.consumer import ConsumerRunner, Received
    from ..kafka.retry import FailurePolicy
    from ..kafka.transactions import TransactionalRunner

Handler = Callable[[OrderEvent, "Received"], "str | None"]
log = logging.getLogger("order_system.services.groups")
GC_YOUNG_THRESHOLD = 10_000  # see fewer_collections()


class Group(Protocol):
    """What a consumer group contributes: its id and one handler per status."""

    group_id: str

    def handlers(self) -> Mapping[OrderStatus, Handler]: ...


# ---- wiring -----------------------------------------------------------------------------------


def runner_for(group: Group, settings: Settings, *, failure_policy: FailurePolicy | None = None,
               **options: Any) -> ConsumerRunner | TransactionalRunner:
    """A runner that feeds ``group``'s handlers from the settings' topic (or the group's own
    ``input_topic``).

    Failures are handled in the style the group names in ``retry_style`` (retry topics when
    it names none), unless ``failure_policy`` is given. The ``OrderProcessor`` gets its
    transactional runner (``processor_runner``); it retries in place and takes no policy.
    """
    from ..kafka.consumer import ConsumerRunner
    from ..kafka.retry import policy_for

    if isinstance(group, OrderProcessor):
        if failure_policy is not None:
            raise ValueError("the order-processor retries in place inside its transactional loop and takes no "
                             "failure_policy; set OrderProcessor(attempts=..., backoff=...) instead")
        return processor_runner(group, settings, **options)
    policy = failure_policy or policy_for(getattr(group, "retry_style", "topics"))
    _reads_own_topic(group, settings, policy, options)
    return ConsumerRunner(settings, group.group_id, group.handlers(), failure_policy=policy, **options)


def _reads_own_topic(group: Group, settings: Settings, policy: FailurePolicy, options: dict[str, Any]) -> None:
    """A group that names an ``input_topic(settings)`` (notification-service: the verdicts) reads
    it, plus the policy's retry topics, through its ``decode(received)``."""
    input_topic = getattr(group, "input_topic", None)
    if input_topic is not None:
        options.setdefault("topics", [input_topic(settings), *policy.extra_topics(settings)])
        options.setdefault("decoder", group.decode)  # type: ignore[attr-defined]


def processor_runner(processor: OrderProcessor, settings: Settings, *, require_key: bool = True,
                     name: str | None = None, extra_config: Mapping[str, Any] | None = None,
                     batch_size: int | None = None) -> TransactionalRunner:
    """The order-processor's exactly-once runner: reads ``order-events`` read_committed and
    writes verdicts, state, effects, dead letters and its offsets in one transaction per batch.
    Its transactional id is ``order-processor-<instance id>``. On assignment each partition's
    orders are restored from ``order-state`` before any of its records is processed."""
    from ..kafka.changelog_reader import restore_orders
    from ..kafka.transactions import BATCH_SIZE, TransactionalRunner

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
        batch_size=batch_size or BATCH_SIZE,
    )


def fewer_collections() -> None:
    """Let Python's cyclic garbage collector look at young objects every 10,000 allocations
    instead of 700 (process-wide; a higher threshold already set is kept).

    The processor keeps every order in memory (about 25 tracked objects per order of four
    events) and a batch makes a few thousand short-lived objects. At the default threshold
    those get promoted while the batch is still alive, and each such wave triggers a full
    collection, which walks every order held: that was 40 % of the processor's CPU time
    (benchmarks, README "How fast"). Garbage cycles are still freed, just a little later."""
    young, older, oldest = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # 0: the application turned the collector off; leave it
        gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def standard_groups(state_dir: str | Path | None = None, *, instance_id: str | None = None,
                    ) -> tuple[OrderProcessor, NotificationService, AnalyticsService]:
    """The tutorial's three groups; with ``state_dir`` the notification-service's store is a
    file there. The order-processor keeps its state in Kafka (``order-state``), never only on
    disk; ``instance_id`` names it (default ``ORDER_SYSTEM_INSTANCE_ID`` or the host name)."""
    processor = OrderProcessor(instance_id=instance_id)
    if state_dir is None:
        return processor, NotificationService(), AnalyticsService()
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return processor, NotificationService(folder / "notification-service.db"), AnalyticsService()
