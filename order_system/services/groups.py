"""The three consumer groups of the tutorial, each with its own logic and its own state.

A group here is a plain object with a ``group_id`` and a ``handlers()`` table (status ->
handler). It knows nothing of Kafka: ``runner_for`` wires it to a ``ConsumerRunner``, so adding
a fourth group means writing one more small class, and no existing module changes.
"""

from __future__ import annotations

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

Handler = Callable[[OrderEvent, "Received"], "str | None"]


class Group(Protocol):
    """What a consumer group contributes: its id and one handler per status."""

    group_id: str

    def handlers(self) -> Mapping[OrderStatus, Handler]: ...


# ---- wiring -----------------------------------------------------------------------------------


def runner_for(group: Group, settings: Settings, *, failure_policy: FailurePolicy | None = None,
               **options: Any) -> ConsumerRunner:
    """A ``ConsumerRunner`` that feeds ``group``'s handlers from the settings' topic.

    Failures are handled in the style the group names in ``retry_style`` (retry topics when
    it names none), unless ``failure_policy`` is given.
    """
    from ..kafka.consumer import ConsumerRunner
    from ..kafka.retry import policy_for

    policy = failure_policy or policy_for(getattr(group, "retry_style", "topics"))
    return ConsumerRunner(settings, group.group_id, group.handlers(), failure_policy=policy, **options)


def standard_groups(state_dir: str | Path | None = None) -> tuple[OrderProcessor, NotificationService, AnalyticsService]:
    """The tutorial's three groups; with ``state_dir`` their stores are files there."""
    if state_dir is None:
        return OrderProcessor(), NotificationService(), AnalyticsService()
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return (
        OrderProcessor(folder / "order-processor.db"),
        NotificationService(folder / "notification-service.db"),
        AnalyticsService(),
    )
