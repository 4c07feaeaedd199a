"""``interfaces/children.py`` with real child processes that are not consumers (no broker needed):
the restart bound, the stop with SIGTERM, the SIGKILL of a child that does not stop."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from order_system.interfaces import children as module
from order_system.interfaces.children import Children, describe_exit

PYTHON = sys.executable


def test_a_child_that_keeps_ending_is_restarted_then_given_up(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(module, "RESTART_DELAY", 0.0)
    gave_up = threading.Event()
    with caplog.at_level(logging.INFO, logger=module.log.name):
        supervisor = Children({"quitter": [PYTHON, "-c", "raise SystemExit(3)"],
                               "sleeper": [PYTHON, "-c", "import time; time.sleep(60)"]}, {}, gave_up.set).start()
        try:
            assert gave_up.wait(30), caplog.text
        finally:
            supervisor.stop()
    assert supervisor.failed is not None and "quitter ended on its own 4 times within 60 s (last: exit code 3)" \
        in supervisor.failed
    assert caplog.text.count("ended on its own with exit code 3; starting it again") == 3, caplog.text
    assert "sleeper (pid" in caplog.text and "stopped with signal SIGTERM" in caplog.text  # not left running


def test_stop_sends_sigterm_and_kills_a_child_that_ignores_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(module, "STOP_SECONDS", 1.0)
    script = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, {}); "
              "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)")  # the file says: its handler is in place
    ready = [tmp_path / "polite", tmp_path / "stubborn"]
    with caplog.at_level(logging.INFO, logger=module.log.name):
        supervisor = Children({"polite": [PYTHON, "-c", script.format("lambda *_: sys.exit(0)"), str(ready[0])],
                               "stubborn": [PYTHON, "-c", script.format("signal.SIG_IGN"), str(ready[1])]},
                              {}).start()
        deadline = time.monotonic() + 30
        while not all(path.exists() for path in ready):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)  # other processes: nothing to wait on but their files
        processes = [child.process for child in supervisor.children]
        supervisor.stop()
    assert supervisor.failed is None
    assert all(p is not None and p.poll() is not None for p in processes)
    assert "polite (pid" in caplog.text and "stopped with exit code 0" in caplog.text
    assert "stubborn (pid" in caplog.text and "did not stop within 1 s of SIGTERM; killing it with SIGKILL" \
        in caplog.text
    assert "stopped with signal SIGKILL" in caplog.text


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "signal SIGKILL"
