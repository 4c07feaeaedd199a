"""The Spring Kafka interop program, fetched (first run only) and compiled once per session."""

from __future__ import annotations

import pytest

from order_system.local.spring_client import SpringClient


@pytest.fixture(scope="session")
def spring() -> SpringClient:
    client = SpringClient()
    client.prepare(say=print)  # Maven and javac only on the first run; later runs need neither
    return client
