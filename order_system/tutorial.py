"""Small helpers the notebooks call, so that no logic lives only in a notebook.

Each notebook works on its own fresh topics (``setup("nb02-keys")``) and deletes them at the
end (``teardown``), so the notebooks run in any order, again and again, with the same results.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from .broker import ensure_broker
from .config import Settings
from .reader import read_records
from .errors import InvalidEvent
from .events import OrderEvent
from .producer import Delivery
from .topics import create_topics, delete_topics


def setup(name: str, partitions: int = 3, quiet: bool = True) -> Settings:
    """Make sure a broker runs (starting one if needed) and create this notebook's topics."""
    if quiet:  # the notebooks show results as tables; the consumers' logs would drown them
        logging.getLogger("order_system").setLevel(logging.CRITICAL)
    base = Settings.from_env()
    ensure_broker(base, say=lambda line: None)
    settings = replace(base, topic=f"{name}-{uuid.uuid4().hex[:6]}", partitions=partitions)
    create_topics(settings)
    print(f"Kafka is ready at {settings.bootstrap_servers}; this notebook's topic is {settings.topic} "
          f"({settings.partitions} partitions, with retry and dead-letter topics)")
    return settings


def teardown(settings: Settings) -> None:
    """Delete the notebook's topics."""
    delete_topics(settings, list(settings.all_topics))
    print(f"Deleted {len(settings.all_topics)} topics of this notebook.")


def read_events(settings: Settings, topic: str | None = None, timeout: float = 10.0) -> pd.DataFrame:
    """Every record of the topic, in partition and offset order, with its decoded event."""
    rows = []
    for message in read_records(settings, topic or settings.topic, timeout, 100_000):
        key = message.key().decode() if message.key() is not None else None
        try:
            event = OrderEvent.from_json(message.value())
            decoded = {"order_id": event.order_id, "status": event.status.value, "version": event.version}
        except InvalidEvent as exc:
            decoded = {"order_id": None, "status": f"(invalid: {exc.reason})", "version": None}
        rows.append({"partition": message.partition(), "offset": message.offset(), "key": key, **decoded})
    return pd.DataFrame(rows, columns=["partition", "offset", "key", "order_id", "status", "version"])


def placement(deliveries: Iterable[Delivery]) -> pd.DataFrame:
    """Per order: the partitions its events went to, their offsets and statuses, and whether
    all of them sit on one partition in version order."""
    rows = []
    by_order: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        assert delivery.event is not None
        by_order.setdefault(delivery.event.order_id, []).append(delivery)
    for order_id, placed in by_order.items():
        placed.sort(key=lambda d: (d.partition, d.offset))
        versions = [d.event.version for d in placed if d.event]
        rows.append({
            "order_id": order_id,
            "partitions": sorted({d.partition for d in placed}),
            "offsets": [d.offset for d in placed],
            "statuses": " → ".join(d.event.status.value for d in placed if d.event),
            "one_partition": len({d.partition for d in placed}) == 1,
            "in_order": versions == sorted(versions),
        })
    return pd.DataFrame(rows).set_index("order_id")


def plot_events_per_partition(frame: pd.DataFrame, title: str = "Events per partition"):  # type: ignore[no-untyped-def]
    """A bar chart of how many records each partition holds (from ``read_events``)."""
    import matplotlib.pyplot as plt

    counts = frame.groupby("partition").size()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    counts.plot.bar(ax=ax, color="#4C72B0", rot=0)
    ax.set_xlabel("partition")
    ax.set_ylabel("events")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def read_order_events(settings: Settings, topic: str | None = None, timeout: float = 10.0) -> list[OrderEvent]:
    """The decodable events of the topic, partition by partition in offset order (a replay)."""
    events = []
    for message in read_records(settings, topic or settings.topic, timeout, 100_000):
        try:
            events.append(OrderEvent.from_json(message.value()))
        except InvalidEvent:
            continue
    return events


def history_frame(events: Iterable[OrderEvent]) -> pd.DataFrame:
    """Events as a table: version, status, description."""
    return pd.DataFrame(
        [{"version": e.version, "status": e.status.value, "description": e.description} for e in events],
        columns=["version", "status", "description"],
    )
