"""How a consumer runner logs the records it receives: the tutorial's block, a line, or a summary.

``block`` (the default) is the block the Spring tutorial's listener prints for every record;
``line`` one line per record; ``summary`` one line per runner every ``SUMMARY_EVERY`` seconds
while records arrive (``serve`` and ``consume`` choose it: a block per record is too much at a
few hundred records a second). ``log_records(style)`` sets it for the process.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain.events import OrderEvent
    from .records import Received

RECORD_LOGS = ("block", "line", "summary")
SUMMARY_EVERY = 10.0  # seconds between two summary lines of a runner
_style = "block"


def log_records(style: str) -> None:
    """How runners log records from now on: ``block``, ``line`` or ``summary``."""
    global _style
    if style not in RECORD_LOGS:
        raise ValueError(f"record log style {style!r} is not one of {', '.join(RECORD_LOGS)}")
    _style = style


class RecordLog:
    """One runner's record lines, in the process's style."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name, self.log = name, log
        self._period = [time.monotonic(), 0]  # start of the summary's period, records received in it

    def received(self, received: Received, event: OrderEvent | None, processed: int, dead_lettered: int) -> None:
        status = event.status.value if event else "(undecodable)"
        key = received.key[:100] if received.key is not None else None
        if _style == "summary":
            self._period[1] += 1
            began, count = self._period
            now = time.monotonic()
            if now - began >= SUMMARY_EVERY:
                self.log.info("[%s] %d records in %.0f s (%.0f/s); %d processed, %d dead-lettered in all", self.name,
                              count, now - began, count / (now - began), processed, dead_lettered)
                self._period[:] = [now, 0]
        elif _style == "line":
            self.log.info("[%s] received %s partition %d offset %d key %s %s", self.name, received.topic,
                          received.partition, received.offset, key, status)
        else:
            self.log.info("\n---- %s received ----\n  topic %s, partition %d, offset %d\n  key (order id): %s\n"
                          "  status: %s\n--------------------------", self.name, received.topic, received.partition,
                          received.offset, key, status)

    def handled(self, text: str, suffix: str = "") -> None:
        """The line for a handled record: shown in the block style only."""
        self.log.log(logging.INFO if _style == "block" else logging.DEBUG, "%s%s", text, suffix)
