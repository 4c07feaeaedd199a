"""The consumer groups of ``order-system serve``, each in a child process of its own.

``serve`` keeps the REST API, the view, the producer and the outbox relay in its own process, and
runs each consumer group as ``order-system consume --group G`` in a child process, so the groups
and the API do not share one GIL. ``Children`` starts the children, watches them and stops them:

* One thread, the supervisor, starts every child, looks at them five times a second and stops
  them at the end. It is the thread that started them, and it outlives them (``die_with_parent``).
* A child that exits on its own is started again, with a log line that gives its exit code, after
  ``RESTART_DELAY`` seconds times the number of its recent exits (1 s, 2 s, 3 s: a broker that is
  restarting has time to come back), at most ``MAX_RESTARTS`` times in ``RESTART_WINDOW``
  seconds. At its next exit the supervisor gives up: ``failed`` says why, the other children are
  stopped and ``on_give_up`` is called (serve stops its API and exits 1). A service with a group
  missing is never left running.
* ``stop()`` sends SIGTERM to every child (each one commits what it finished and closes), waits
  at most ``STOP_SECONDS``, then sends SIGKILL, with a log line.
* Each child runs in a process group of its own, so Ctrl-C in a terminal reaches serve alone,
  which stops its API first and then its children.
* A child asks Linux for SIGTERM when serve dies (``die_with_parent``): a serve killed with
  SIGKILL leaves no orphan that holds on to the order-processor's partitions.

The children write their output to serve's stdout and stderr; each of their lines names its group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("order_system.interfaces.children")

GROUPS = ("order-processor", "notification-service", "analytics-service")  # what serve runs, in this order
PARENT_ENV = "ORDER_SYSTEM_PARENT_PID"  # set in a child's environment: the pid of the serve that started it
MAX_RESTARTS = 3  # restarts of one child allowed within RESTART_WINDOW seconds
RESTART_WINDOW = 60.0
RESTART_DELAY = 1.0  # seconds before a restart, times the child's exits within the window
STOP_SECONDS = 20.0  # how long stop() waits for the children after SIGTERM, before SIGKILL
POLL_SECONDS = 0.2  # how often the supervisor looks at the children
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def consume_command(group: str, *, instance_id: str, state_dir: str | Path | None = None,
                    log_records: str = "summary") -> list[str]:
    """The command line of the child that runs ``group``: ``order-system consume --group GROUP ...``."""
    command = [sys.executable, "-m", "order_system", "consume", "--group", group, "--instance-id", instance_id,
               "--log-records", log_records]
    return command + (["--state-dir", str(state_dir)] if state_dir is not None else [])


def describe_exit(code: int) -> str:
    """``exit code 1``, or for a child killed by a signal ``signal SIGKILL``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


@dataclass
class Child:
    """One group's child process, and when it last exited on its own."""

    group: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    exits: deque[float] = field(default_factory=deque)  # time.monotonic() of its exits within the window


class Children:
    """Start, watch and stop one child process per command (see the module doc).

    ``commands`` maps each group to its command line; ``env`` is the children's environment.
    Use it as a context manager, or call ``start()`` and then ``stop()``.
    """

    def __init__(self, commands: Mapping[str, Sequence[str]], env: Mapping[str, str],
                 on_give_up: Callable[[], None] = lambda: None) -> None:
        self.children = [Child(group, list(command)) for group, command in commands.items()]
        self.env = {**env, PARENT_ENV: str(os.getpid())}
        self.on_give_up = on_give_up
        self.failed: str | None = None  # why the supervisor gave up, once it has
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="children", daemon=True)

    def __enter__(self) -> Children:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Children:
        """Start every child (from the supervisor thread) and return once they are started."""
        self._thread.start()
        self._started.wait()
        return self

    def stop(self) -> None:
        """SIGTERM to every child still running, wait for each (SIGKILL after ``STOP_SECONDS``)."""
        self._stopping.set()
        self._thread.join()

    # ---- the supervisor thread ------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            try:
                for child in self.children:
                    self._spawn(child)
            finally:
                self._started.set()
            while not self._stopping.wait(POLL_SECONDS):
                for child in self.children:
                    code = child.process.poll() if child.process is not None else None
                    if code is not None and not self._restart(child, code):
                        self._give_up(f"{child.group} ended on its own {len(child.exits)} times within "
                                      f"{RESTART_WINDOW:.0f} s (last: {describe_exit(code)})")
                        return
        except OSError as exc:  # the interpreter could not be started at all
            self._give_up(f"could not start a child process: {exc}")
        finally:
            self._terminate()

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env, process_group=0)
        log.info("started %s (pid %d)", child.group, child.process.pid)

    def _restart(self, child: Child, code: int) -> bool:
        """Start ``child`` again after it exited with ``code``; False when it exited too often."""
        now = time.monotonic()
        child.exits.append(now)
        while now - child.exits[0] > RESTART_WINDOW:
            child.exits.popleft()
        if len(child.exits) > MAX_RESTARTS:
            return False
        delay = RESTART_DELAY * len(child.exits)
        log.warning("%s (pid %d) ended on its own with %s; starting it again in %.0f s (restart %d of at most %d "
                    "in %.0f s)", child.group, child.process.pid if child.process else -1, describe_exit(code), delay,
                    len(child.exits), MAX_RESTARTS, RESTART_WINDOW)
        if not self._stopping.wait(delay):  # the other children are looked at again after it
            self._spawn(child)
        return True

    def _give_up(self, why: str) -> None:
        self.failed = f"{why}; serve stopped, see the log above"
        log.error("giving up: %s", self.failed)
        self.on_give_up()

    def _terminate(self) -> None:
        """SIGTERM to every running child at once, then wait for each; SIGKILL the ones that do not stop."""
        running = [child for child in self.children if child.process is not None and child.process.poll() is None]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            assert child.process is not None
            try:
                code = child.process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) did not stop within %.0f s of SIGTERM; killing it with SIGKILL",
                          child.group, child.process.pid, STOP_SECONDS)
                child.process.kill()
                code = child.process.wait()
            log.info("%s (pid %d) stopped with %s", child.group, child.process.pid, describe_exit(code))


def die_with_parent() -> None:
    """In a child of serve (``PARENT_ENV`` set): ask Linux to send this process SIGTERM when serve
    dies, so that it stops (and commits) instead of living on as an orphan.

    If serve died before the request was made, nobody will send that signal: the child exits at once.
    The signal follows the thread that started the child, which is why one supervisor thread
    starts them all and ends only after them. Elsewhere than on Linux, this does nothing.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != int(parent):
        raise SystemExit(f"serve (pid {parent}) is gone; not starting")
