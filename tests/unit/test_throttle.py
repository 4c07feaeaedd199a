"""The error throttle: one line per client per interval, with a count of what it held back."""

from __future__ import annotations

import logging

from order_system.kafka.throttle import ErrorThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(client: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("order_system.kafka", level, __file__, 1, "%s [%s] %s",
                             ("FAIL", f"{client}#consumer-1", "Connect failed: Connection refused"), None)


def test_one_line_per_client_per_interval_then_the_count_held_back() -> None:
    clock = Clock()
    throttle = ErrorThrottle(interval=10.0, clock=clock)
    assert throttle.filter(record("a"))
    assert throttle.filter(record("b"))  # another client has its own window
    shown = [throttle.filter(record("a")) for _ in range(5)]
    assert shown == [False] * 5
    clock.now += 9.9
    assert not throttle.filter(record("a"))
    clock.now += 0.2
    again = record("a")
    assert throttle.filter(again)
    assert again.getMessage().endswith("(6 similar line(s) in the last 10s not shown)")
    assert "Connection refused" in again.getMessage()


def test_info_lines_and_the_consumer_gate() -> None:
    clock = Clock()
    throttle = ErrorThrottle(interval=10.0, clock=clock)
    assert all(throttle.filter(record("a", logging.INFO)) for _ in range(3))  # below WARNING: untouched
    assert throttle.admit("runner") == 0
    assert throttle.admit("runner") is None
    clock.now += 10
    assert throttle.admit("runner") == 1
    assert throttle.note(1) == " (1 similar line(s) in the last 10s not shown)" and throttle.note(0) == ""
