"""A ``Future`` per published record that costs the garbage collector little.

``concurrent.futures.Future()`` builds a ``threading.Condition`` of its own (a lock, a deque, bound
methods) and two lists. A burst of 100,000 publishes kept all of them alive until the broker
acknowledged the records, and the collector walked them again and again: once that was most of
what publishing cost (benchmarks/README.md). ``LightFuture`` shares one Condition with the other
futures of its producer and makes its two lists only when ``concurrent.futures.wait`` or
``add_done_callback`` asks for them. It sets the four attributes ``Future.__init__`` sets and
inherits everything else, so it is a ``Future`` to every caller: ``result``, ``exception``,
``done``, ``add_done_callback``, ``wait`` and ``as_completed`` work as usual
(tests/unit/test_delivery_future.py). Waits loop until this future's own ``done()``: another
future's completion wakes every waiter of the shared Condition.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any


class LightFuture(Future):  # type: ignore[type-arg]
    """A running ``Future`` (a record handed to librdkafka cannot be called back) on a shared Condition."""

    _w: list[Any] | None = None
    _cb: list[Any] | None = None

    def __init__(self, condition: threading.Condition) -> None:  # no super().__init__(): its Condition is the cost
        self._condition = condition
        self._state = "RUNNING"
        self._result = None
        self._exception: BaseException | None = None

    @property
    def _waiters(self) -> list[Any]:  # concurrent.futures.wait and as_completed add theirs here
        if self._w is None:
            self._w = []
        return self._w

    @property
    def _done_callbacks(self) -> list[Any]:
        if self._cb is None:
            self._cb = []
        return self._cb

    def result(self, timeout: float | None = None) -> Any:
        with self._condition:
            self._condition.wait_for(self.done, timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._condition:
            self._condition.wait_for(self.done, timeout)
        return super().exception(0)

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with self._condition:
            if self.done():
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, "FINISHED"
            for waiter in self._w or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._condition.notify_all()
        if self._cb:
            self._invoke_callbacks()
