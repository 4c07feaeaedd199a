"""Test-session set-up shared by tests/ and notebooks/: a real Kafka broker.

When the collected tests need Kafka (anything outside tests/unit) and none answers at the
configured address, a local broker is started before the first test and stopped after the
last one. A broker that was already running (or named in KAFKA_BOOTSTRAP_SERVERS) is reused
and left alone. Set ORDER_SYSTEM_KEEP_BROKER=1 to keep a broker the tests started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from order_system.broker import LocalBroker, ensure_broker
from order_system.config import Settings
from order_system.errors import OrderSystemError

_started: dict[str, object] = {}


def _needs_broker(item: pytest.Item) -> bool:
    return "unit" not in Path(str(item.fspath)).parts


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(_needs_broker(item) for item in items):
        return
    began = time.monotonic()
    try:
        settings = Settings.from_env()
        outcome = ensure_broker(settings, say=lambda line: None)
    except OrderSystemError as exc:  # one clear line, not a page of INTERNALERROR
        pytest.exit(f"no Kafka broker for the tests: {exc}", returncode=3)
    _started.update(outcome=outcome, seconds=time.monotonic() - began, settings=settings)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started.get("outcome") == "started" and not os.environ.get("ORDER_SYSTEM_KEEP_BROKER"):
        settings = _started["settings"]
        assert isinstance(settings, Settings)
        _started["stopped"] = LocalBroker.for_settings(settings).stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "outcome" in _started:
        line = f"Kafka broker: {_started['outcome']} in {_started['seconds']:.1f}s"
        if "stopped" in _started:
            line += f"; {_started['stopped']}"
        terminalreporter.write_line(line)
