"""A guarded producer's librdkafka lines: as librdkafka gives them, until the producer is
abandoned; after that (its successor fences it: the renewal working) at INFO, marked."""

from __future__ import annotations

import logging
import uuid

import pytest

from order_system.kafka.renewal import ClientLog


def test_lines_keep_their_level_until_the_producer_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    # a client name of its own: the error throttle (throttle.py) counts lines per client for the whole process
    client = f"unit-{uuid.uuid4().hex[:8]}#producer-1"
    fenced = ("TXNERR", client, "Fatal transaction error: ... fenced by newer producer instance")
    client_log = ClientLog()
    with caplog.at_level(logging.DEBUG, logger="order_system.kafka"):
        client_log.log(logging.CRITICAL, "%s [%s] %s", *fenced)
        client_log.abandoned = True
        client_log.log(logging.CRITICAL, "%s [%s] %s", *fenced)
        client_log.log(logging.DEBUG, "%s [%s] %s", "BROKER", client, "connecting")
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "order_system.kafka"]
    assert levels == [
        (logging.CRITICAL, f"TXNERR [{client}] Fatal transaction error: ... fenced by newer producer instance"),
        (logging.INFO, f"(abandoned producer, expected) TXNERR [{client}] Fatal transaction error: ... fenced by "
                       "newer producer instance"),
        (logging.DEBUG, f"BROKER [{client}] connecting"),  # below INFO: left as it is
    ]
