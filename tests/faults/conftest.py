"""Fixtures for fault tests: a spare broker that is sure to be running on ports of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from serving import free_port_pair

from order_system.local.broker import BrokerError, LocalBroker
from order_system.config import Settings


@pytest.fixture
def running_spare_broker(settings: Settings) -> Iterator[LocalBroker]:
    """A second real broker, started, for a test to SIGKILL and restart; purged afterwards."""
    with spare_broker() as broker:
        yield broker


@pytest.fixture(scope="module")
def module_spare_broker(settings: Settings) -> Iterator[LocalBroker]:
    """``running_spare_broker`` shared by the tests of one module (none of them may leave it down)."""
    with spare_broker() as broker:
        yield broker


@contextmanager
def spare_broker() -> Iterator[LocalBroker]:
    """Free ports are picked before the broker binds them, and on a busy machine another program
    can take one in between: then it is tried again on other ports (three times at most)."""
    for attempt in range(3):
        broker = LocalBroker(port=free_port_pair(), heap="256m")
        try:
            broker.start(timeout=90)
            break
        except BrokerError as exc:
            broker.stop()
            broker.purge()
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield broker
    finally:
        broker.stop()
        broker.purge()
