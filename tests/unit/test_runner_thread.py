"""RunnerThread without Kafka: a stop that times out says where the loop is stuck."""

from __future__ import annotations

import threading

import pytest

from order_system.kafka.runner_thread import RunnerThread


class Stuck(RunnerThread):
    """A loop that ignores stop() until it is let go, inside a call of its own."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.entered = threading.Event()
        self.release = threading.Event()

    def _run(self) -> None:
        self.blocking_call()

    def blocking_call(self) -> None:
        self.entered.set()
        self.release.wait(30)


def test_a_stop_that_times_out_names_the_call_the_thread_is_in() -> None:
    runner = Stuck().start()
    assert runner.entered.wait(10)
    with pytest.raises(TimeoutError, match=r"runner stuck did not stop within 0s; its thread is at .*blocking_call "
                                           r"\(test_runner_thread\.py:\d+\)") as caught:
        runner.stop(timeout=0.2)
    assert caught.value.args[0].index("wait (threading.py") < caught.value.args[0].index("blocking_call")
    runner.release.set()
    runner.stop(timeout=10)
    assert not runner.running and runner.where() == "(not running)"
