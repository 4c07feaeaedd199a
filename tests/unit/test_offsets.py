"""An offset query that answers no offset (-1001) is an error to ask again, never a number."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from order_system.kafka.offsets import LEADERSHIP_SETTLING, known, retrying


def test_a_missing_offset_is_a_retriable_leadership_error() -> None:
    tp = TopicPartition("order-events", 2)
    assert known(0, tp) == 0 and known(1830, tp) == 1830
    with pytest.raises(KafkaException) as raised:
        known(-1001, tp)  # what a new leader answers before its high watermark caught up
    error = raised.value.args[0]
    assert error.code() == KafkaError.OFFSET_NOT_AVAILABLE and error.code() in LEADERSHIP_SETTLING
    assert "order-events[2]" in error.str()


def test_retrying_asks_again_until_an_offset_comes() -> None:
    tp = TopicPartition("order-state", 0)
    answers = iter([-1001, -1001, 1596])
    assert retrying(lambda: known(next(answers), tp), timeout=5) == 1596
    with pytest.raises(KafkaException):
        retrying(lambda: known(-1001, tp), timeout=0.3)


def test_a_lost_connection_or_a_timeout_is_asked_again_a_bad_request_is_not() -> None:
    from order_system.kafka.offsets import transient

    assert transient(KafkaError(KafkaError._TRANSPORT))  # a broker killed while it had the request
    assert transient(KafkaError(KafkaError._TIMED_OUT))
    assert transient(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    assert transient(KafkaError(KafkaError.NOT_COORDINATOR))  # the group's coordinator moved (a failover)
    assert not transient(KafkaError(KafkaError.INVALID_CONFIG))
    assert not transient(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))
