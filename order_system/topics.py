"""Topic administration: create the order topic, its retry topics and its dead-letter topic."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Settings
from .errors import TopicError


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.client_config())


def create_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create every topic of ``settings`` that is missing; idempotent.

    Returns ``{topic: "created" | "exists"}``. A topic that exists with fewer partitions than
    configured is reported as a ``TopicError`` rather than silently used.
    """
    admin = admin_client(settings)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
        for name in settings.all_topics
    ]
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
    _check_partitions(admin, settings, timeout)
    return outcome


def _check_partitions(admin: AdminClient, settings: Settings, timeout: float) -> None:
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
    metadata = admin_client(settings).list_topics(topic or settings.topic, timeout=timeout)
    found = metadata.topics.get(topic or settings.topic)
    if found is None or found.error is not None:
        raise TopicError(f"topic {topic or settings.topic!r} does not exist; run `order-system topics create`")
    return len(found.partitions)
