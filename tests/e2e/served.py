"""The REST API over real HTTP (uvicorn on a free port) with the real broker behind it, as fixtures.

Test modules import the fixtures they use (``from served import api``) rather than getting them
from a conftest.py here (see tests/serving.py on conftest modules).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serving import serve_in_thread
from fastapi import FastAPI

from order_system.interfaces.api import create_app
from order_system.interfaces.auth import ApiTokens
from order_system.config import Settings
from order_system.kafka.consumer import run_groups
from order_system.services.processor import OrderProcessor
from order_system.bootstrap import runner_for
from order_system.state.outbox import Outbox
from order_system.kafka.ordering import OrderedProducer
from order_system.kafka.topics import create_topics, delete_topics
from order_system.state.view import OrderView

TOKENS = {"alice-token-0123456789": "alice", "bob-token-0123456789ab": "bob"}


@dataclass
class Api:
    client: httpx.Client
    settings: Settings
    processor: OrderProcessor
    view: OrderView
    outbox: Outbox
    app: FastAPI
    base: str


@contextmanager
def running_api(tmp_path: Path, tokens: ApiTokens | None = None) -> Iterator[Api]:
    settings = Settings.from_env().with_topic(f"api-{uuid.uuid4().hex[:8]}")
    create_topics(settings)
    processor = OrderProcessor(instance_id=f"e2e-{uuid.uuid4().hex[:8]}")
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        with OrderedProducer(settings, outbox) as producer, run_groups(runner_for(processor, settings)), \
                OrderView(settings) as view:
            app = create_app(settings, producer, view, outbox=outbox, tokens=tokens, groups=("order-processor",))
            with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as client:
                yield Api(client, settings, processor, view, outbox, app, base)
    finally:
        delete_topics(settings, list(settings.all_topics))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """Authentication off (the tutorial's default)."""
    with running_api(tmp_path) as running:
        yield running


@pytest.fixture
def authed_api(tmp_path: Path) -> Iterator[Api]:
    """Authentication on, with the tokens of alice and bob (``TOKENS``)."""
    with running_api(tmp_path, ApiTokens(TOKENS)) as running:
        yield running
