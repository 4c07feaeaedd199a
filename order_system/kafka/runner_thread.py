"""What every runner of the package shares: one loop in its own thread, stopped on request,
waits on its progress, the errors it met, and the hooks it reports to. ``ConsumerRunner`` (at
least once) and ``TransactionalRunner`` (exactly once) differ only in their loop."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from confluent_kafka import KafkaError, Message

from .records import Received, Stopping
from .throttle import KAFKA_ERRORS

MAX_FAILURES_KEPT = 1000  # runner.errors and runner.failures keep the most recent ones

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

    log: logging.Logger

    def __init__(self, name: str, hooks: RunnerHooks | None = None) -> None:
        self.name = name
        self.hooks = hooks or QUIET
        self.errors: deque[KafkaError] = deque(maxlen=MAX_FAILURES_KEPT)  # the most recent ones
        # every failed decode or handler attempt, newest last (without its frames: see records.without_frames)
        self.failures: deque[tuple[Received, Exception]] = deque(maxlen=MAX_FAILURES_KEPT)
        self.fatal: str | None = None  # why the runner stopped by itself
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

    # ---- errors -------------------------------------------------------------------------------

    def give_up(self, why: str) -> None:
        """Stop the runner by itself, saying why (``fatal``)."""
        self.fatal = why
        self.log.error("%s", why)
        self._stop.set()

    def on_error(self, error: KafkaError) -> None:
        """A consumer error: a fatal one stops the runner; others are logged, at most one line per
        ``throttle.INTERVAL`` (a down broker repeats itself twenty times a second)."""
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.errors.append(error)
        if error.fatal():
            self.give_up(f"{self.name}: fatal consumer error: {error.str()}")
            return
        held = KAFKA_ERRORS.admit(self.name)
        if held is not None:
            self.log.warning("[%s] consumer error: %s%s", self.name, error.str(), KAFKA_ERRORS.note(held))

    def received(self, messages: list[Message]) -> list[Received]:
        """The records among ``messages``; their errors go to ``on_error``."""
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(Received.from_message(message))
            else:
                self.on_error(error)
        return records


@contextmanager
def run_groups(*runners: R) -> Iterator[tuple[R, ...]]:
    """Start every runner; stop them all on exit, even after an error."""
    started: list[RunnerThread] = []
    try:
        for runner in runners:
            started.append(runner.start())
        yield runners
    finally:
        for runner in started:
            runner._stop.set()  # ask all at once, then wait for each
        for runner in started:
            runner.stop()

