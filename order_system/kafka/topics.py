"""Topic administration: create the order topic, its retry and dead-letter topics, and the
order-processor's state (compacted), effects and verdicts topics, co-partitioned with it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import Settings
from ..domain.errors import TopicError


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.client_config())


@dataclass(frozen=True)
class Replication:
    """How many copies each partition gets, and how many must hold a record before acks=all answers."""

    factor: int
    min_insync: int | None  # None: the broker's default
    brokers: int
    chosen: bool  # True: chosen from the brokers that answer; False: set in the environment

    def describe(self) -> str:
        isr = f"min.insync.replicas={self.min_insync}" if self.min_insync else "the broker's min.insync.replicas"
        why = f"{self.brokers} broker(s) answer" if self.chosen else "ORDER_SYSTEM_REPLICATION_FACTOR is set"
        return f"replication factor {self.factor}, {isr} ({why})"

    def topic_config(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)} if self.min_insync else {}


def choose_replication(settings: Settings, admin: AdminClient | None = None, timeout: float = 30.0) -> Replication:
    """``replication_for`` the number of brokers that answer."""
    return replication_for(settings, len((admin or admin_client(settings)).list_topics(timeout=timeout).brokers))


def replication_for(settings: Settings, brokers: int) -> Replication:
    """Replication 3 with min.insync.replicas=2 when three or more brokers answer, else one copy per
    broker; ORDER_SYSTEM_REPLICATION_FACTOR and ORDER_SYSTEM_MIN_INSYNC_REPLICAS win."""
    if settings.replication_from_env:
        factor = settings.replication_factor
        return Replication(factor, settings.min_insync_replicas or (2 if factor >= 3 else None), brokers, chosen=False)
    factor = max(1, min(brokers, 3))
    min_insync = settings.min_insync_replicas or (factor - 1 if factor > 1 else None)
    return Replication(factor, min_insync, brokers, chosen=True)


def create_topics(settings: Settings, timeout: float = 30.0, replication: Replication | None = None) -> dict[str, str]:
    """Create every topic of ``settings`` that is missing; idempotent.

    Returns ``{topic: "created" | "exists"}``. A topic that exists with fewer partitions or fewer
    replicas than configured is reported as a ``TopicError`` (saying how to fix it) rather than
    silently used. ``replication`` defaults to ``choose_replication``.
    """
    admin = admin_client(settings)
    replication = replication or choose_replication(settings, admin, timeout)
    wanted = [NewTopic(name, num_partitions=settings.partitions, replication_factor=replication.factor,
                       config={**replication.topic_config(), **topic_config(settings, name)})
              for name in settings.all_topics]
    futures = admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
    outcome: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.name() != "TOPIC_ALREADY_EXISTS":
                raise TopicError(f"could not create topic {name!r}: {error.str()}") from exc
            outcome[name] = "exists"
    metadata = _check_partitions(admin, settings, timeout)
    _check_co_partitioned(metadata, settings)
    _check_replicas(metadata, settings, replication, [n for n, o in outcome.items() if o == "exists"])
    return outcome


VERDICT_RETENTION_MS = 7 * 24 * 3600 * 1000


def topic_config(settings: Settings, name: str) -> dict[str, str]:
    """Per-topic settings: ``order-state`` is a compacted changelog (the last state per order
    stays), the verdicts are kept 7 days; every other topic uses the broker's defaults."""
    if name == settings.state_topic:
        return {"cleanup.policy": "compact"}
    if name == settings.verdicts_topic:
        return {"cleanup.policy": "delete", "retention.ms": str(VERDICT_RETENTION_MS)}
    return {}


def _check_co_partitioned(metadata: Any, settings: Settings) -> None:
    """The processor writes each output record to the input record's partition number, so its
    topics must have exactly as many partitions as the events topic: refuse anything else."""
    events = len(metadata.topics[settings.topic].partitions)
    for name in settings.processor_topics:
        found = len(metadata.topics[name].partitions)
        if found != events:
            raise TopicError(
                f"topic {name!r} has {found} partitions but {settings.topic!r} has {events}: the order-processor "
                f"writes each order's state, effects and verdicts to the partition number of its events, so they "
                f"must match. Delete {name!r} (its records are lost; order-state is rebuilt only by reprocessing "
                f"{settings.topic!r} from the start) and run `order-system topics create` again, or give "
                f"{settings.topic!r} {found} partitions.")


def _check_replicas(metadata: Any, settings: Settings, replication: Replication, existing: list[str]) -> None:
    """An existing topic with fewer replicas than chosen loses acknowledged records with one broker:
    say so, and how to fix it, instead of using it."""
    thin = {name: metadata.topics[name] for name in existing
            if min(len(p.replicas) for p in metadata.topics[name].partitions.values()) < replication.factor}
    if not thin:
        return
    brokers = sorted(metadata.brokers)
    plan = {"version": 1, "partitions": [
        {"topic": name, "partition": p.id, "replicas": (
            list(p.replicas) + [b for b in _rotate(brokers, p.id) if b not in p.replicas])[:replication.factor]}
        for name, topic in thin.items() for p in sorted(topic.partitions.values(), key=lambda p: p.id)]}
    found = ", ".join(f"{name!r} ({min(len(p.replicas) for p in t.partitions.values())} replica(s))"
                      for name, t in thin.items())
    raise TopicError(
        f"topics {found} exist with fewer replicas than the {replication.describe()}: one broker's loss "
        "would lose their acknowledged records. To keep their records, save this plan as plan.json and run "
        f"Kafka's `kafka-reassign-partitions.sh --bootstrap-server {settings.bootstrap_servers} "
        f"--reassignment-json-file plan.json --execute`, then set min.insync.replicas with kafka-configs.sh: "
        f"{json.dumps(plan, separators=(',', ':'))} . Or delete them (their records are lost) and run "
        "`order-system topics create` again. To keep them as they are, set ORDER_SYSTEM_REPLICATION_FACTOR."
    )


def _rotate(items: list[int], by: int) -> list[int]:
    return items[by % len(items):] + items[:by % len(items)] if items else items


def _check_partitions(admin: AdminClient, settings: Settings, timeout: float) -> Any:
    """Wait until every topic shows in the metadata with its partitions (creation propagates
    asynchronously), then check that none has fewer partitions than configured."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        missing = [n for n in settings.all_topics if n not in metadata.topics or metadata.topics[n].error is not None
                   or not metadata.topics[n].partitions]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TopicError(f"topics {missing} are not visible {timeout:.0f}s after creation")
        time.sleep(0.1)  # metadata propagation has no event to wait on
    for name in settings.all_topics:
        found = len(metadata.topics[name].partitions)
        if found < settings.partitions:
            raise TopicError(
                f"topic {name!r} has {found} partitions, fewer than the configured "
                f"{settings.partitions}; delete it or set ORDER_SYSTEM_PARTITIONS={found}"
            )
    return metadata


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Delete ``names`` (missing ones are ignored). Tests use it to clean up."""
    if not names:
        return
    admin = admin_client(settings)  # keep a reference: the futures die with the client
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise TopicError(f"could not delete topic {name!r}: {exc.args[0].str()}") from exc


def partition_count(settings: Settings, topic: str | None = None, timeout: float = 10.0) -> int:
    topic = topic or settings.topic
    found = admin_client(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    if found is None or found.error is not None:
        raise TopicError(f"topic {topic!r} does not exist; run `order-system topics create`")
    return len(found.partitions)
