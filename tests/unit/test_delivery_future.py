"""The producer's light future behaves as a concurrent.futures.Future (shared Condition), and
resolves to a Delivery even when the broker gave no offset."""

from __future__ import annotations

import json
import threading
from concurrent.futures import FIRST_COMPLETED, TimeoutError, as_completed, wait

import pytest
from confluent_kafka import Message

from order_system.domain.errors import PublishError
from order_system.domain.events import OrderStatus
from order_system.interfaces.schemas import ActionAccepted
from order_system.kafka.producer import Sending


def sending(shared: threading.Condition) -> Sending:
    return Sending("order-events", b"o-1", b"{}", None, None, None, None, shared)


def test_result_waits_for_its_own_future_not_a_sibling() -> None:
    shared = threading.Condition()
    mine, sibling = sending(shared), sending(shared)
    assert mine.running() and not mine.done() and not mine.cancel()
    threading.Timer(0.05, sibling.set_result, ("other",)).start()  # wakes every waiter of the Condition
    with pytest.raises(TimeoutError):
        mine.result(timeout=0.5)
    threading.Timer(0.05, mine.set_result, ("mine",)).start()
    assert mine.result(timeout=10) == "mine" and sibling.result() == "other"


def test_exception_callbacks_wait_and_as_completed() -> None:
    shared = threading.Condition()
    ok, failed = sending(shared), sending(shared)
    seen: list[object] = []
    failed.add_done_callback(lambda f: seen.append(f.exception()))
    threading.Timer(0.05, failed.set_exception, (PublishError("no"),)).start()
    done, pending = wait([ok, failed], timeout=10, return_when=FIRST_COMPLETED)
    assert done == {failed} and pending == {ok}
    assert isinstance(seen[0], PublishError)
    with pytest.raises(PublishError):
        failed.result()
    ok.set_result(1)
    assert set(as_completed([ok, failed], timeout=10)) == {ok, failed}
    ok.add_done_callback(lambda f: seen.append(f.result()))  # already done: called at once
    assert seen[-1] == 1
    with pytest.raises(Exception):
        ok.set_result(2)  # a future resolves once


def test_an_acknowledgement_without_an_offset_answers_offset_null() -> None:
    """librdkafka acknowledges a retried send the broker had already stored (say, across a leader
    failover) without an offset; confluent-kafka's Message.offset() is then None. A CI run of the
    cluster test answered such a pay with a 500 (the response model wanted an int)."""
    unknown = Message(topic="order-events", partition=2, offset=-1001).offset()  # RD_KAFKA_OFFSET_INVALID
    assert unknown is None
    record = sending(threading.Condition())
    record.landed(2, unknown)
    delivery = record.result(0)
    assert (delivery.partition, delivery.offset) == (2, None)
    answer = ActionAccepted(order_id="o-1", message="pay accepted", status=OrderStatus.PAID, version=2,
                            partition=delivery.partition, offset=delivery.offset)
    assert json.loads(answer.model_dump_json(by_alias=True))["offset"] is None
