"""Fixtures for tests against the real broker: every test gets its own topics and groups."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from order_system.broker import answers_metadata
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
