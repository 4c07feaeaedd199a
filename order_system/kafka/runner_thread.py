"""What every runner of the package shares: one loop in its own thread, stopped on request,
and waits on its progress. ``ConsumerRunner`` (at least once) and ``TransactionalRunner``
(exactly once) differ only in their loop."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from .records import Stopping

R = TypeVar("R", bound="RunnerThread")


class RunnerHooks:
    """What a runner reports as it goes, to whoever wired it (``bootstrap.py`` passes hooks that
    move the Prometheus counters): the runners never import what observes them. These do nothing."""

    def handled(self, group: str, count: int = 1) -> None:
        """``count`` records finished by the group's handler."""

    def retried(self, group: str, count: int = 1) -> None:
        """``count`` failed attempts that will be tried again."""

    def dead_lettered(self, group: str, count: int = 1) -> None:
        """``count`` records sent to the dead-letter topic."""


QUIET = RunnerHooks()


class RunnerThread:
    """A loop (``_run``, supplied by the subclass) in a daemon thread."""

    def __init__(self, name: str, hooks: RunnerHooks | None = None) -> None:
        self.name = name
        self.hooks = hooks or QUIET
        self.assigned = threading.Event()  # set once the first partitions were assigned
        self._assignment: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._progress = threading.Condition()  # notified after every record, batch and rebalance
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def start(self: R) -> R:
        return self._launch()

    def _launch(self: R) -> R:
        if self._thread is not None:
            raise RuntimeError(f"runner {self.name} was already started")
        self._thread = threading.Thread(target=self._run, name=f"runner-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to finish; returns once it has committed what it finished and closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"runner {self.name} did not stop within {timeout:.0f}s; its thread is at "
                                   f"{self.where()}")

    def where(self, depth: int = 6) -> str:
        """The innermost ``depth`` calls the runner's thread is in now (what a stop waits on)."""
        frame = sys._current_frames().get(self._thread.ident) if self._thread and self._thread.ident else None
        if frame is None:
            return "(not running)"
        calls = traceback.extract_stack(frame)[-depth:]
        return " <- ".join(f"{c.name} ({c.filename.rsplit('/', 1)[-1]}:{c.lineno})" for c in reversed(calls))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end by itself (a fatal error); True once it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __enter__(self: R) -> R:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_assigned(self, timeout: float = 30.0) -> bool:
        return self.assigned.wait(timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate()`` holds; False on timeout.

        It is re-checked after every record (or batch) and rebalance of this runner, and at
        least every 0.1 s, so a predicate may also watch other runners.
        """
        deadline = time.monotonic() + timeout
        with self._progress:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.1))
        return True

    def sleep(self, seconds: float) -> None:
        """Back off inside the loop without missing ``stop()``; raises ``Stopping`` if asked to stop."""
        if self._stop.wait(seconds):
            raise Stopping()

    @property
    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._assignment)
