"""Durable state for a consumer group: each order's recorded events and the side effects they
caused, in SQLite.

Kafka delivers at least once: after a crash, everything after the last committed offset comes
again. This store makes that harmless. Each event is recorded in ONE transaction together with
the side effects it caused; what an event's version means (duplicate, conflict, gap) is decided
by ``state_machine.check_version`` before, and ``record`` refuses to write when another consumer
recorded that version of the order meanwhile. So a restarted consumer, fed the same records
again, ends with exactly the side effects of a run without the crash. (The alternative,
rebuilding state from offset 0 with side effects suppressed, costs a full replay on every start.)

``:memory:`` (the default) keeps everything in the process, which suits notebooks; a file path
makes the state survive the process.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from ..domain.changelog import Effect
from ..domain.events import OrderEvent
from .sqlite import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    order_id TEXT NOT NULL, version INTEGER NOT NULL, event_json TEXT NOT NULL,
    PRIMARY KEY (order_id, version));
CREATE TABLE IF NOT EXISTS effects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
    kind TEXT NOT NULL, detail TEXT NOT NULL, UNIQUE (event_id, kind));
"""


class OrderStore:
    """Recorded events and side effects; safe to share between threads."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def event_id(self, order_id: str, version: int) -> uuid.UUID | None:
        """The eventId recorded for this version of the order, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT event_json FROM history WHERE order_id = ? AND version = ?", (order_id, version)
            ).fetchone()
        return OrderEvent.from_json(row[0]).event_id if row else None

    def record(self, event: OrderEvent, effects: Iterable[Effect] = ()) -> bool:
        """Record ``event`` and its ``effects`` atomically.

        Returns False (and changes nothing) when this version of the order is already recorded:
        someone recorded meanwhile, so the caller decides again. The caller checks the version
        beforehand.
        """
        with write_transaction(self._db, self._lock) as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO history (order_id, version, event_json) VALUES (?, ?, ?)",
                (event.order_id, event.version, event.to_json().decode()),
            ).rowcount
            if not inserted:
                return False
            db.executemany(
                "INSERT OR IGNORE INTO effects (event_id, order_id, kind, detail) VALUES (?, ?, ?, ?)",
                [(str(event.event_id), event.order_id, e.kind, e.detail) for e in effects],
            )
        return True

    def effects(self) -> list[dict[str, str]]:
        """Every recorded side effect, in the order it happened."""
        with self._lock:
            rows = self._db.execute("SELECT event_id, order_id, kind, detail FROM effects ORDER BY seq").fetchall()
        return [dict(zip(("event_id", "order_id", "kind", "detail"), row)) for row in rows]

    def effect_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT kind, COUNT(*) FROM effects GROUP BY kind ORDER BY kind").fetchall()
        return dict(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
