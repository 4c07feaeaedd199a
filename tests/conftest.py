"""Fixtures for tests against the real broker: every test gets its own topics and groups."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from order_system.broker import LocalBroker, answers_metadata
from order_system.config import Settings
from order_system.topics import create_topics, delete_topics


@pytest.fixture(scope="session")
def settings() -> Settings:
    found = Settings.from_env()
    if not answers_metadata(found.bootstrap_servers, client_options=dict(found.client_options)):
        pytest.fail(f"no Kafka broker answers at {found.bootstrap_servers}; run `order-system broker start`")
    return found


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that no other test uses: unique('grp') -> 'grp-3f9a2b1c'."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_settings(settings: Settings, unique: Callable[[str], str]) -> Iterator[Settings]:
    """Settings for a fresh order topic (with retry and dead-letter topics), deleted afterwards."""
    fresh = settings.with_topic(unique("test-order-events"))
    create_topics(fresh)
    yield fresh
    delete_topics(fresh, list(fresh.all_topics))


def free_port_pair() -> int:
    """A port p such that p and p + 1 (a broker's controller port) are both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture
def free_port() -> int:
    return free_port_pair()


@pytest.fixture
def spare_broker(settings: Settings) -> Iterator[LocalBroker]:
    """A second real broker on free ports (not started), for tests that stop and kill it.

    It shares the cached jars with the main broker; it is stopped and its data deleted after.
    """
    broker = LocalBroker(port=free_port_pair(), heap="256m")
    yield broker
    broker.stop()
    broker.purge()
