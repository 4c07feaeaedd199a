"""The producer's light future behaves as a concurrent.futures.Future (shared Condition)."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, TimeoutError, as_completed, wait

import pytest

from order_system.domain.errors import PublishError
from order_system.kafka.producer import _Pending


def test_result_waits_for_its_own_future_not_a_sibling() -> None:
    shared = threading.Condition()
    mine, sibling = _Pending(shared), _Pending(shared)
    assert mine.running() and not mine.done() and not mine.cancel()
    threading.Timer(0.05, sibling.set_result, ("other",)).start()  # wakes every waiter of the Condition
    with pytest.raises(TimeoutError):
        mine.result(timeout=0.5)
    threading.Timer(0.05, mine.set_result, ("mine",)).start()
    assert mine.result(timeout=10) == "mine" and sibling.result() == "other"


def test_exception_callbacks_wait_and_as_completed() -> None:
    shared = threading.Condition()
    ok, failed = _Pending(shared), _Pending(shared)
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
