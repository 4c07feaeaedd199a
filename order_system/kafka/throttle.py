"""Keep repeated connection errors from flooding the log.

With the broker down, librdkafka reports every failed reconnect (about twenty a second per
client). ``ErrorThrottle`` lets one line per client through every ``interval`` seconds and
says how many it held back. ``KAFKA_ERRORS`` is the one shared instance: a logging filter on
the ``order_system.kafka`` logger (``Settings.client_config`` sends librdkafka's own lines there)
and the gate the consumer's error handler asks before logging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

INTERVAL = 10.0


class ErrorThrottle(logging.Filter):
    """At most one warning-or-worse line per client every ``interval`` seconds."""

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, client: str) -> int | None:
        """``None`` to hold this line back; else how many lines of ``client`` were held since the last one."""
        now = self.clock()
        with self._lock:
            last = self._last.get(client)
            if last is not None and now - last < self.interval:
                self._held[client] = self._held.get(client, 0) + 1
                return None
            self._last[client] = now
            return self._held.pop(client, 0)

    def note(self, held: int) -> str:
        """The suffix saying how many similar lines were not shown."""
        return f" ({held} similar line(s) in the last {self.interval:.0f}s not shown)" if held else ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        held = self.admit(client_of(record))
        if held is None:
            return False
        if held:
            record.msg, record.args = f"{record.getMessage()}{self.note(held)}", ()
        return True


def client_of(record: logging.LogRecord) -> str:
    """The client id of a librdkafka log record (its args are facility, ``client.id#kind-N``, text)."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str):
        return args[1].split("#", 1)[0]
    return record.name


KAFKA_ERRORS = ErrorThrottle()
logging.getLogger("order_system.kafka").addFilter(KAFKA_ERRORS)
