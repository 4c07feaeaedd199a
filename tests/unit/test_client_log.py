"""A guarded producer's librdkafka lines: as librdkafka gives them, until the producer is
abandoned; after that (its successor fences it: the renewal working) at INFO, marked."""

from __future__ import annotations

import logging

import pytest

from order_system.kafka.renewal import ClientLog

FENCED = ("TXNERR", "order-processor-tx#producer-8", "Fatal transaction error: ... fenced by newer producer instance")


def test_lines_keep_their_level_until_the_producer_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    client_log = ClientLog()
    with caplog.at_level(logging.DEBUG, logger="order_system.kafka"):
        client_log.log(logging.CRITICAL, "%s [%s] %s", *FENCED)
        client_log.abandoned = True
        client_log.log(logging.CRITICAL, "%s [%s] %s", *FENCED)
        client_log.log(logging.DEBUG, "%s [%s] %s", "BROKER", "order-processor-tx#producer-8", "connecting")
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "order_system.kafka"]
    assert levels == [
        (logging.CRITICAL, "TXNERR [order-processor-tx#producer-8] Fatal transaction error: ... fenced by newer "
                           "producer instance"),
        (logging.INFO, "(abandoned producer, expected) TXNERR [order-processor-tx#producer-8] Fatal transaction "
                       "error: ... fenced by newer producer instance"),
        (logging.DEBUG, "BROKER [order-processor-tx#producer-8] connecting"),  # below INFO: left as it is
    ]
