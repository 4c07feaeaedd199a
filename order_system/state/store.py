"""Durable state for a consumer group: orders, their history and side effects, in SQLite.

Kafka delivers at least once: after a crash, everything after the last committed offset comes
again. This store makes that harmless. Each event is recorded in ONE transaction together with
the state change and the side effects it caused; what an event's version means (duplicate,
conflict, gap) is decided by ``state_machine.check_version`` before, and ``record`` refuses to
write when another consumer recorded something for the order meanwhile. So a restarted
consumer, fed the same records again, ends with exactly the state and the side effects of a
run without the crash. (The alternative, rebuilding state from offset 0 with side effects
suppressed, costs a full replay on every start.)

``:memory:`` (the default) keeps everything in the process, which suits notebooks; a file path
makes the state survive the process.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from ..domain.changelog import Effect
from ..domain.events import OrderEvent, OrderStatus
from ..domain.state_machine import Order, rebuild_order
from .sqlite import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
    version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    order_id TEXT NOT NULL, version INTEGER NOT NULL, event_json TEXT NOT NULL,
    PRIMARY KEY (order_id, version));
CREATE TABLE IF NOT EXISTS effects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
    kind TEXT NOT NULL, detail TEXT NOT NULL, UNIQUE (event_id, kind));
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id);
"""


class OrderStore:
    """Orders, their event history and side effects; safe to share between threads."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    def version(self, order_id: str) -> int:
        """The version of the last recorded event of the order (0 when unknown)."""
        with self._lock:
            row = self._db.execute("SELECT version FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return row[0] if row else 0

    def get(self, order_id: str) -> Order | None:
        """The order rebuilt from its recorded history, or None."""
        return rebuild_order(self.history(order_id), order_id)

    def event_id(self, order_id: str, version: int) -> uuid.UUID | None:
        """The eventId recorded for this version of the order, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT event_json FROM history WHERE order_id = ? AND version = ?", (order_id, version)
            ).fetchone()
        return OrderEvent.from_json(row[0]).event_id if row else None

    def history(self, order_id: str) -> list[OrderEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_json FROM history WHERE order_id = ? ORDER BY version", (order_id,)
            ).fetchall()
        return [OrderEvent.from_json(row[0]) for row in rows]

    def record(self, event: OrderEvent, effects: Iterable[Effect] = (), previous: int | None = None) -> bool:
        """Record ``event``, the order's new state and ``effects`` atomically.

        Returns False (and changes nothing) when this version of the order is already recorded
        or, given ``previous``, when the order is no longer at version ``previous`` (0: no
        order): someone recorded meanwhile, so the caller decides again. The caller checks the
        version and the transition beforehand.
        """
        stamp = event.timestamp.isoformat()
        with self._transaction() as db:
            if previous is not None:
                row = db.execute("SELECT version FROM orders WHERE order_id = ?", (event.order_id,)).fetchone()
                if (row[0] if row else 0) != previous:
                    return False
            inserted = db.execute(
                "INSERT OR IGNORE INTO history (order_id, version, event_json) VALUES (?, ?, ?)",
                (event.order_id, event.version, event.to_json().decode()),
            ).rowcount
            if not inserted:
                return False
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
                "status = excluded.status, version = excluded.version, updated_at = excluded.updated_at "
                "WHERE excluded.version > orders.version",
                (event.order_id, event.customer_id, event.status.value, event.version, stamp, stamp),
            )
            db.executemany(
                "INSERT OR IGNORE INTO effects (event_id, order_id, kind, detail) VALUES (?, ?, ?, ?)",
                [(str(event.event_id), event.order_id, e.kind, e.detail) for e in effects],
            )
        return True

    def summaries(
        self, status: OrderStatus | None = None, customer_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, object]]:
        """A page of orders (newest first) without their history, optionally filtered."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(OrderStatus(status).value)
        if customer_id is not None:
            where.append("customer_id = ?")
            args.append(customer_id)
        sql = "SELECT order_id, customer_id, status, version, created_at, updated_at FROM orders"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        sql += " ORDER BY created_at DESC, order_id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit, offset)).fetchall()
        keys = ("order_id", "customer_id", "status", "version", "created_at", "updated_at")
        return [dict(zip(keys, row)) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def statuses(self) -> dict[str, OrderStatus]:
        """Every order's current status."""
        with self._lock:
            rows = self._db.execute("SELECT order_id, status FROM orders").fetchall()
        return {order_id: OrderStatus(status) for order_id, status in rows}

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
