"""Test-session set-up shared by tests/ and notebooks/: a real Kafka broker.

When the collected tests need Kafka (anything outside tests/unit) and none answers at the
configured address, a local broker is started before the first test and stopped after the
last one. A broker that was already running (or named in KAFKA_BOOTSTRAP_SERVERS) is reused
and left alone. Set ORDER_SYSTEM_KEEP_BROKER=1 to keep a broker the tests started.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from order_system.local.broker import LocalBroker, ensure_broker
from order_system.config import Settings
from order_system.domain.errors import OrderSystemError

_started: dict[str, object] = {}
# a notebook's own topics (see order_system.local.tutorial.setup): nb06-interactive-3f9a2b, ...-retry-0, ...-dlt
NOTEBOOK_TOPIC = re.compile(r"^nb\d\d-[a-z0-9-]+-[0-9a-f]{6}(-retry-[01]|-dlt|-state|-effects|-verdicts)?$")


def _notebook_topics(settings: Settings) -> set[str]:
    from order_system.kafka.topics import admin_client

    return {name for name in admin_client(settings).list_topics(timeout=10).topics if NOTEBOOK_TOPIC.match(name)}


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
    if any(str(item.fspath).endswith(".ipynb") for item in items):
        _started["notebook_topics"] = _notebook_topics(settings)


def _sweep_notebook_topics(settings: Settings) -> None:
    """Delete notebook topics that appeared during this run and are still there: nbval kills each
    kernel at the end, so 06 (whose dashboard stays usable until its Stop button) cannot tidy up,
    and a notebook that failed half-way did not reach its clean-up cell."""
    from order_system.kafka.topics import delete_topics

    before = _started["notebook_topics"]
    assert isinstance(before, set)
    left = sorted(_notebook_topics(settings) - before)
    delete_topics(settings, left)
    _started["swept"] = len(left)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    settings = _started.get("settings")
    if isinstance(settings, Settings) and "notebook_topics" in _started:
        _sweep_notebook_topics(settings)
    if _started.get("outcome") == "started" and not os.environ.get("ORDER_SYSTEM_KEEP_BROKER"):
        assert isinstance(settings, Settings)
        _started["stopped"] = LocalBroker.for_settings(settings).stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "outcome" in _started:
        line = f"Kafka broker: {_started['outcome']} in {_started['seconds']:.1f}s"
        if "stopped" in _started:
            line += f"; {_started['stopped']}"
        if _started.get("swept"):
            line += f"; deleted {_started['swept']} topics the notebooks left behind"
        terminalreporter.write_line(line)
