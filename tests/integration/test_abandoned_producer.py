"""An abandoned transactional producer, fenced by its successor as renewal intends, says so at
INFO: not with librdkafka's CRITICAL ``Fatal transaction error``, which reads as an outage (and
which notebook 08 once printed to stderr in the middle of its failover)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException

from order_system.config import Settings
from order_system.kafka.renewal import GuardedProducer


def test_a_producer_fenced_after_it_was_abandoned_is_logged_at_info(topic_settings: Settings,
                                                                    unique: Callable[[str], str],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    options = {"transactional.id": unique("abandoned-tx"), "client.id": unique("abandoned")}
    with caplog.at_level(logging.INFO, logger="order_system.kafka"):
        old = GuardedProducer(topic_settings, options)
        old.init_transactions(30)
        old.begin_transaction()
        old.produce(topic_settings.topic, b"before", b"key")
        assert old.client.flush(10) == 0
        old._abandon("commit_transaction", old.stall_seconds)  # what a stall does
        new = GuardedProducer(topic_settings, options)
        new.init_transactions(30)  # bumps the epoch: the old producer is fenced
        old.produce(topic_settings.topic, b"after", b"key")
        with pytest.raises(KafkaException, match="fenced"):  # the broker refuses the old epoch
            old.client.flush(10)
        new.close()
    old_client = [r for r in caplog.records if r.name == "order_system.kafka" and options["client.id"] in r.getMessage()
                  and "fenced" in r.getMessage()]
    assert old_client, [r.getMessage() for r in caplog.records][-20:]
    assert all(r.levelno == logging.INFO and r.getMessage().startswith("(abandoned producer, expected) ")
               for r in old_client), [(r.levelname, r.getMessage()) for r in old_client]
