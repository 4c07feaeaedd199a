"""Small helpers the notebooks call, so that no logic lives only in a notebook.

Each notebook works on its own fresh topics (``setup("nb02-keys")``) and deletes them at the
end (``teardown``), so the notebooks run in any order, again and again, with the same results.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .broker import ensure_broker
from ..config import Settings
from ..kafka.compaction import read_log
from ..kafka.offsets import end_offsets
from ..kafka.reader import read_records
from ..domain.changelog import order_from_json
from ..domain.errors import InvalidEvent
from ..domain.events import OrderEvent
from ..kafka.producer import Delivery
from ..kafka.topics import create_topics, delete_topics

NO_KEY = "(no key)"  # how the notebooks show a record without a key


def setup(name: str) -> Settings:
    """Make sure a broker runs (starting one if needed) and create this notebook's topics."""
    # the notebooks show results as tables; the consumers' logs would drown them
    logging.getLogger("order_system").setLevel(logging.CRITICAL)
    base = Settings.from_env()
    ensure_broker(base, say=lambda line: None)
    settings = replace(base, topic=f"{name}-{uuid.uuid4().hex[:6]}", partitions=3)
    create_topics(settings)
    print(f"Kafka is ready at {settings.bootstrap_servers}; this notebook's topic is {settings.topic} "
          f"({settings.partitions} partitions, with retry and dead-letter topics)")
    return settings


def teardown(settings: Settings) -> None:
    """Delete the notebook's topics."""
    delete_topics(settings, list(settings.all_topics))
    print(f"Deleted {len(settings.all_topics)} topics of this notebook.")


def read_events(settings: Settings, topic: str | None = None) -> pd.DataFrame:
    """Every record of the topic, in partition and offset order, with its decoded event."""
    rows = []
    for message in read_records(settings, topic or settings.topic, 10.0, 100_000):
        key = message.key().decode(errors="replace") if message.key() is not None else NO_KEY
        try:
            event = OrderEvent.from_json(message.value())
            decoded = {"order_id": event.order_id, "status": event.status.value, "version": event.version}
        except InvalidEvent as exc:
            decoded = {"order_id": None, "status": f"(invalid: {exc.reason})", "version": None}
        rows.append({"partition": message.partition(), "offset": message.offset(), "key": key, **decoded})
    return pd.DataFrame(rows, columns=["partition", "offset", "key", "order_id", "status", "version"])


def placement(deliveries: Iterable[Delivery]) -> pd.DataFrame:
    """Per order, its events in the order they happened (by version, then event time), each with
    the partition and offset the broker gave it.

    ``one_partition``: all of the order's events sit on one partition. ``in_order``: they sit on
    one partition at increasing offsets, so every consumer reads them in the order they happened.
    Offsets of different partitions are not compared: they are separate counters, and Kafka
    promises no order between partitions (``in_order`` is then False), and neither is an offset
    the broker did not report (``Delivery.offset`` None).
    """
    by_order: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        assert delivery.event is not None
        by_order.setdefault(delivery.event.order_id, []).append(delivery)
    rows = []
    for order_id, placed in by_order.items():
        placed.sort(key=lambda d: (d.event.version, d.event.timestamp))  # type: ignore[union-attr]
        partitions = [d.partition for d in placed]
        offsets = [d.offset for d in placed]
        one = len(set(partitions)) == 1
        rows.append({
            "order_id": order_id,
            "statuses": " → ".join(d.event.status.value for d in placed if d.event),
            "partitions": partitions,
            "offsets": offsets,
            "one_partition": one,
            "in_order": one and None not in offsets and offsets == sorted(offsets),  # type: ignore[type-var]
        })
    return pd.DataFrame(rows).set_index("order_id")


def plot_spread(events: pd.DataFrame, table: pd.DataFrame, title: str):  # type: ignore[no-untyped-def]
    """Two bar charts: records per partition (from ``read_events``), and orders by how many
    partitions their events went to (from ``placement``)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
    events.groupby("partition").size().plot.bar(ax=left, color="#4C72B0", rot=0)
    left.set(xlabel="partition", ylabel="events", title="events per partition")
    spread = table["partitions"].map(lambda p: len(set(p))).value_counts().reindex([1, 2, 3], fill_value=0)
    spread.plot.bar(ax=right, color="#DD8452", rot=0)
    right.set(xlabel="partitions one order's events went to", ylabel="orders", title="orders by partitions used")
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def label_missing_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The same table with a missing key shown as ``(no key)`` and other gaps left blank."""
    return frame.assign(key=frame["key"].where(frame["key"].notna(), NO_KEY)).fillna("")


def read_order_events(settings: Settings) -> list[OrderEvent]:
    """The decodable events of the topic, partition by partition in offset order (a replay)."""
    events = []
    for message in read_records(settings, settings.topic, 10.0, 100_000):
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


def plot_lag(frame: pd.DataFrame, title: str = "A burst, consumed by three groups"):  # type: ignore[no-untyped-def]
    """Two charts from a ``LagWatch`` frame: each group's lag over time, and the events it has handled."""
    import matplotlib.pyplot as plt

    fig, (lag_ax, done_ax) = plt.subplots(1, 2, figsize=(9, 3))
    for group, rows in frame.groupby("group", sort=False):
        lag_ax.step(rows["seconds"], rows["lag"], where="post", label=group)
        handled = rows["handled"].dropna()
        if not handled.empty:
            done_ax.plot(rows.loc[handled.index, "seconds"], handled - handled.iloc[0], label=group)
    lag_ax.set_title("lag (events not yet committed)")
    done_ax.set_title("events handled since the first sample")
    for ax in (lag_ax, done_ax):
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
    lag_ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def changelog_frame(settings: Settings) -> pd.DataFrame:
    """The records of the order-state topic (the processor's changelog) as a read_committed consumer
    sees them, in partition and offset order: each the order's state after one accepted event."""
    rows = []
    for message in read_log(settings, settings.state_topic):
        key = message.key().decode(errors="replace") if message.key() is not None else NO_KEY
        if message.value() is None:
            rows.append({"partition": message.partition(), "key": key, "status": "(tombstone)"})
            continue
        try:
            order = order_from_json(message.value())
            decoded = {"status": order.status.value, "version": order.version, "events": len(order.history)}
        except InvalidEvent as exc:
            decoded = {"status": f"(invalid: {exc.reason})"}
        rows.append({"partition": message.partition(), "key": key, **decoded})
    return pd.DataFrame(rows, columns=["partition", "key", "status", "version", "events"])


def start_processor(settings: Settings, instance_id: str, log: Path | None = None,
                    batch_size: int | None = None) -> subprocess.Popen[bytes]:
    """The order-processor as its own process, as it runs in production: ``order-system consume
    --group order-processor --instance-id <id>`` on this notebook's topics (output to ``log``);
    ``batch_size``: records per transaction (small ones keep a transaction open most of the time)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "ORDER_SYSTEM_TOPIC": settings.topic,
           "ORDER_SYSTEM_PARTITIONS": str(settings.partitions)}
    with log.open("ab") if log is not None else nullcontext(subprocess.DEVNULL) as output:  # the child keeps its copy
        return subprocess.Popen(
            [sys.executable, "-m", "order_system", "consume", "--group", "order-processor",
             "--instance-id", instance_id, *(["--batch-size", str(batch_size)] if batch_size is not None else [])],
            env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def open_transaction(settings: Settings, topic: str) -> bool:
    """Whether a transaction is open on ``topic`` (some partition's last stable offset is below its end)."""
    return any(stable < high for stable, high in end_offsets(settings, topic).values())


def freeze_mid_transaction(process: subprocess.Popen[bytes], settings: Settings, topic: str,
                           committed_before: int = 1, timeout: float = 60.0) -> None:
    """Freeze ``process`` (SIGSTOP) at a moment when it has a transaction open on ``topic``, after
    at least ``committed_before`` offsets of that topic were committed (summed over partitions).

    Once enough is committed, the process is frozen again and again, each time looked at from
    the broker, and let go (SIGCONT) until it is caught mid-batch. A frozen process sends
    nothing more, so what the broker shows then stays true. It is left frozen: SIGKILL it (or
    SIGCONT it to let it go on).
    """
    deadline = time.monotonic() + timeout

    def ends(freeze: bool = False) -> list[tuple[int, int]]:
        """(last stable offset, end offset) per partition, once the process is checked (and frozen)."""
        if process.poll() is not None:
            raise RuntimeError(f"the process exited (code {process.returncode}) before it was caught mid-batch")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the process had no transaction open on {topic} whenever it was frozen "
                               f"({timeout:.0f}s)")
        if freeze:
            process.send_signal(signal.SIGSTOP)
            time.sleep(0.03)  # requests it sent just before still reach the broker (a commit may land)
        return list(end_offsets(settings, topic).values())

    while sum(stable for stable, _ in ends()) < committed_before:
        time.sleep(0.01)  # not yet worth freezing: earlier batches are still being committed
    while True:
        if any(stable < high for stable, high in ends(freeze=True)):
            time.sleep(0.2)
            if any(stable < high for stable, high in ends()):  # still open: nothing was on its way to close it
                return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.02)  # let it run a little before freezing it again
