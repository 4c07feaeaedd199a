"""A durable local outbox for events the broker did not acknowledge.

When the broker is away past the producer's delivery timeout, the event is written here (a
SQLite file) instead of being lost. ``resend`` publishes the kept records again, oldest
first, and deletes each one only once the broker acknowledged it, so a crash during a resend
loses nothing (it may send a record twice; consumers recognise the duplicate by its version).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from .config import default_home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key BLOB, value BLOB,
    headers TEXT NOT NULL, error TEXT NOT NULL, kept_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Kept:
    """One record waiting in the outbox."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    error: str
    kept_at: float


def default_outbox_path() -> Path:
    return default_home() / "outbox.db"


class Outbox:
    """Records kept for a later resend, in the order they were kept."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_outbox_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def keep(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None, error: str) -> int:
        """Store one record durably; returns its sequence number."""
        encoded = json.dumps([(k, v.hex()) for k, v in headers or []])
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO outbox (topic, key, value, headers, error, kept_at) VALUES (?, ?, ?, ?, ?, ?)",
                (topic, key, value, encoded, error, time.time()),
            )
        return int(cursor.lastrowid or 0)

    def pending(self) -> list[Kept]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, headers, error, kept_at FROM outbox ORDER BY seq"
            ).fetchall()
        return [
            Kept(seq, topic, key, value, [(k, bytes.fromhex(v)) for k, v in json.loads(headers)], error, kept_at)
            for seq, topic, key, value, headers, error, kept_at in rows
        ]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def resend(self, send: Callable[[Kept], Future], timeout: float = 30.0,
               progress: Callable[[int, int], None] | None = None) -> int:
        """Send every kept record again, in order; returns how many the broker acknowledged.

        ``send`` publishes one record and returns a future of its delivery. Records are sent
        one after another and each is removed only after its acknowledgement; the first
        failure stops the resend so that the order is kept (the rest stay in the outbox).
        """
        kept = self.pending()
        sent = 0
        for record in kept:
            send(record).result(timeout=timeout)
            self.remove(record.seq)
            sent += 1
            if progress:
                progress(sent, len(kept))
        return sent

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OutboxRelay:
    """Re-sends the outbox by itself once the broker is back, while the process runs."""

    def __init__(self, outbox: Outbox, send: Callable[[Kept], Future], reachable: Callable[[], bool],
                 interval: float = 2.0) -> None:
        self.outbox, self.send, self.reachable, self.interval = outbox, send, reachable, interval
        self.resent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if len(self.outbox) and self.reachable():
                try:
                    self.resent += self.outbox.resend(self.send)
                except Exception:  # the broker went away again: keep the rest for the next round
                    continue

    def start(self) -> OutboxRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
