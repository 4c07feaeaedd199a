"""How records are logged: the tutorial's block, a line per record, or a periodic summary."""

from __future__ import annotations

import logging

import pytest

from order_system.config import Settings
from order_system.domain.events import OrderEvent
from order_system.interfaces.cli import build_parser
from order_system.kafka import record_log
from order_system.kafka.consumer import ConsumerRunner, Received
from order_system.kafka.record_log import log_records


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    yield ConsumerRunner(Settings.from_env(), "logs-group", {})  # not started: nothing connects
    log_records("block")


def received(offset: int) -> Received:
    return Received("order-events", 2, offset, "a1b2c3d4", 0, {}, b"{}", b"a1b2c3d4")


def test_block_line_and_summary(runner: ConsumerRunner, caplog: pytest.LogCaptureFixture,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG, logger="order_system.kafka.consumer")
    event = OrderEvent.created("a1b2c3d4", "customer-1")
    runner.record_log.received(received(7), event, 0, 0)
    runner.record_log.handled("[logs-group] handled")
    assert "---- logs-group received ----\n  topic order-events, partition 2, offset 7" in caplog.messages[0]
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]

    caplog.clear()
    log_records("line")
    runner.record_log.received(received(8), event, 0, 0)
    runner.record_log.handled("[logs-group] handled")
    assert caplog.messages[0] == "[logs-group] received order-events partition 2 offset 8 key a1b2c3d4 CREATED"
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG]  # one INFO line per record

    caplog.clear()
    log_records("summary")
    for offset in range(9, 19):
        runner.record_log.received(received(offset), event, 0, 0)
    assert caplog.messages == []  # within the period: nothing yet
    monkeypatch.setattr(record_log, "SUMMARY_EVERY", 0.0)
    runner.record_log.received(received(19), event, 0, 0)
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith("[logs-group] 11 records in ")

    with pytest.raises(ValueError):
        log_records("verbose")


def test_serve_and_consume_default_to_the_summary() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).log_records == "summary"
    assert parser.parse_args(["consume", "--group", "order-processor"]).log_records == "summary"
    assert parser.parse_args(["serve", "--log-records", "block"]).log_records == "block"
