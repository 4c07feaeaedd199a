"""Consumer lag: how far each group is behind the end of each partition, now and over time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress

import pandas as pd
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ..config import Settings
from ..domain.errors import TopicError
from .offsets import known, retrying, watermarks

COLUMNS = ["group", "topic", "partition", "committed", "end_offset", "lag"]
WATCH_COLUMNS = ["seconds", "group", "lag", "handled"]


def consumer_lag(settings: Settings, group_ids: Iterable[str], topic: str | None = None,
                 timeout: float = 10.0) -> pd.DataFrame:
    """One row per group and partition: committed offset (-1: none yet), end offset and lag.

    Each group is measured on the topic it reads (``Settings.input_topic``: the events, or the
    verdicts for notification-service); ``topic`` names another main topic to derive them from.
    """
    if topic is not None:
        settings = settings.with_topic(topic)
    rows = []
    for group in group_ids:
        topic = settings.input_topic(group)
        consumer = Consumer(settings.client_config(**{"group.id": group, "enable.auto.commit": False}))
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
            partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
            for tp in committed:
                _, high = watermarks(consumer, tp, timeout)
                done = tp.offset if tp.offset >= 0 else -1
                rows.append({"group": group, "topic": topic, "partition": tp.partition, "committed": done,
                             "end_offset": high, "lag": high - max(done, 0)})
        finally:
            consumer.close()
    return pd.DataFrame(rows, columns=COLUMNS)


def wait_for_zero_lag(settings: Settings, group_ids: Iterable[str], timeout: float = 60.0,
                      topic: str | None = None) -> pd.DataFrame:
    """Poll the lag until every group has committed up to the end; ``TimeoutError`` otherwise."""
    groups = list(group_ids)
    deadline = time.monotonic() + timeout
    while True:
        frame = consumer_lag(settings, groups, topic)
        if not frame.empty and (frame["lag"] == 0).all():
            return frame
        if time.monotonic() > deadline:
            raise TimeoutError(f"lag did not reach 0 within {timeout:.0f}s:\n{frame.to_string(index=False)}")
        time.sleep(0.2)  # committed offsets change on the broker; there is nothing local to wait on


class LagWatch:
    """Samples each group's total lag on a schedule, in a thread, to chart it over time.

    ``groups`` maps group ids to something with a ``processed`` count (a ``ConsumerRunner``)
    to record the events each group has handled so far, or lists group ids only. Samples are
    taken every ``interval`` seconds for at most ``max_seconds`` (a bounded schedule), with one
    admin client: one request for the end offsets and one per group for its committed offsets
    (on the topic it reads, as ``consumer_lag`` measures).
    """

    def __init__(self, settings: Settings, groups: Mapping[str, object] | Iterable[str], *, topic: str | None = None,
                 interval: float = 0.2, max_seconds: float = 120.0, timeout: float = 10.0) -> None:
        self.settings = settings if topic is None else settings.with_topic(topic)
        self.counters = dict(groups) if isinstance(groups, Mapping) else {g: None for g in groups}
        self.reads = {group: self.settings.input_topic(group) for group in self.counters}
        self.interval, self.max_seconds, self.timeout = interval, max_seconds, timeout
        self.rows: list[dict[str, object]] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin = AdminClient(settings.client_config())
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._began = 0.0
        self._latest_began = 0.0  # when the newest sample's queries were sent (time.monotonic())

    def start(self) -> LagWatch:
        for topic in sorted(set(self.reads.values())):
            found = self._admin.list_topics(topic, timeout=self.timeout).topics.get(topic)
            if found is None or found.error is not None:
                raise TopicError(f"topic {topic!r} does not exist; create it before watching its lag")
            self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(found.partitions)]
        self._began = time.monotonic()
        retrying(self._sample, self.timeout)  # the first sample is there when start() returns
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> pd.DataFrame:
        """Stop sampling (after one last sample) and return every sample taken."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout * 2)
            self._thread = None
            with suppress(KafkaException):  # the samples taken so far still stand
                self._sample()
        return self.frame()

    def __enter__(self) -> LagWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def frame(self) -> pd.DataFrame:
        """One row per sample and group: seconds since start, total lag, events handled so far."""
        with self._changed:
            return pd.DataFrame(list(self.rows), columns=WATCH_COLUMNS)

    def latest(self) -> dict[str, int]:
        """Each group's lag in the most recent sample."""
        with self._changed:
            return {str(row["group"]): int(row["lag"]) for row in self.rows[-len(self.counters):]}  # type: ignore[call-overload]

    def wait_until(self, predicate: Callable[[LagWatch], bool], timeout: float = 60.0) -> bool:
        """Wait (bounded) until ``predicate(self)`` holds after a sample; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is None and self._stop.is_set()):
                    return False
                self._changed.wait(min(left, self.interval * 2))
        return True

    def wait_drained(self, timeout: float = 60.0, *, since: float | None = None) -> bool:
        """Wait until every group is at zero lag in a sample begun after ``since`` (a
        ``time.monotonic()`` reading; default: now), i.e. until each group has committed past
        everything published before then. Whether a sample caught the lag above zero on the way
        is ``peak() > 0``: a group faster than the sampling interval drains between two samples."""
        after = time.monotonic() if since is None else since
        return self.wait_until(lambda w: w._latest_began >= after and all(v == 0 for v in w.latest().values()),
                               timeout)

    def peak(self) -> int:
        """The highest lag of any group so far."""
        with self._changed:
            return max((int(row["lag"]) for row in self.rows), default=0)  # type: ignore[call-overload]

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and time.monotonic() - self._began <= self.max_seconds:
            with suppress(Exception):  # a failed sample leaves a gap in the chart; the next one may work
                self._sample()

    def _sample(self) -> None:
        began = time.monotonic()
        ends_f = self._admin.list_offsets({tp: OffsetSpec.latest() for tps in self._partitions.values() for tp in tps},
                                         request_timeout=self.timeout)
        groups_f = {group: self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, list(self._partitions[self.reads[group]]))],
            request_timeout=self.timeout)[group] for group in self.counters}
        ends = {(tp.topic, tp.partition): known(f.result(self.timeout).offset, tp) for tp, f in ends_f.items()}
        seconds = round(time.monotonic() - self._began, 3)
        rows = []
        for group, future in groups_f.items():
            committed = {(tp.topic, tp.partition): tp.offset for tp in future.result(self.timeout).topic_partitions}
            lag = sum(end - max(committed.get(key, 0), 0) for key, end in ends.items() if key[0] == self.reads[group])
            rows.append({"seconds": seconds, "group": group, "lag": lag,
                         "handled": getattr(self.counters[group], "processed", None)})
        with self._changed:
            self.rows.extend(rows)
            self._latest_began = began
            self._changed.notify_all()


