"""A durable local outbox for events the broker did not acknowledge, tied to their cluster.

When the broker is away past the producer's delivery timeout, the event is written here (a
SQLite file) instead of being lost, with the id of the Kafka cluster it was meant for (the
cluster's own ``cluster_id``, not the bootstrap string, which changes with order and aliases).
``OrderedProducer.resend_kept`` sends the rows of the cluster it is connected to again, each
order's rows in the order they were kept, and deletes a row only once the broker
acknowledged it: a crash during a resend loses nothing (it may send a record twice; the
order-processor skips the copy by its eventId). Rows of other clusters are left alone.

This module is the storage and the relay; the ordering rules live in ``kafka/ordering.py``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import default_home
from ..kafka.ordering import ANY_CLUSTER, ChainKey, Resent, Row
from .sqlite import write_transaction

if TYPE_CHECKING:
    from ..kafka.ordering import OrderedProducer

log = logging.getLogger("order_system.state.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key BLOB, value BLOB,
    headers TEXT NOT NULL, error TEXT NOT NULL, kept_at REAL NOT NULL, cluster TEXT);
"""
_COLUMNS = "seq, topic, key, value, headers, error, kept_at, cluster"


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
    cluster: str | None = None  # the Kafka cluster id it was meant for; None: not known when kept


class Outbox:
    """Records kept for a later resend, in the order they were kept."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_home() / "outbox.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; one fsync per checkpoint
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "cluster" not in columns:  # a file from before cluster ids: its rows are of an unknown cluster
            self._db.execute("ALTER TABLE outbox ADD COLUMN cluster TEXT")
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_by_cluster ON outbox (cluster, seq)")

    # ---- writing ------------------------------------------------------------------------

    def keep(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None, error: str, cluster: str | None = None) -> int:
        """Store one record durably; returns its sequence number."""
        return self.keep_many([(topic, key, value, headers, error)], cluster)[0]

    def keep_many(self, rows: Sequence[Row], cluster: str | None) -> list[int]:
        """Store records in one transaction, in the given order; returns their sequence numbers."""
        now = time.time()
        seqs = []
        with write_transaction(self._db, self._lock) as db:
            for topic, key, value, headers, error in rows:
                encoded = json.dumps([(k, v.hex()) for k, v in headers or []])
                cursor = db.execute(
                    "INSERT INTO outbox (topic, key, value, headers, error, kept_at, cluster) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, key, value, encoded, error, now, cluster),
                )
                seqs.append(int(cursor.lastrowid or 0))
        return seqs

    def remove_many(self, seqs: Iterable[int]) -> None:
        with write_transaction(self._db, self._lock) as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", ((s,) for s in seqs))

    def claim(self, seqs: Sequence[int], cluster: str) -> None:
        """Tie rows kept before the cluster was known to ``cluster``."""
        with write_transaction(self._db, self._lock) as db:
            db.executemany("UPDATE outbox SET cluster = ? WHERE seq = ? AND cluster IS NULL",
                           ((cluster, s) for s in seqs))

    def adopt_unknown(self, cluster: str) -> int:
        """Tie every row of an unknown cluster to ``cluster``; returns how many."""
        with write_transaction(self._db, self._lock) as db:
            return db.execute("UPDATE outbox SET cluster = ? WHERE cluster IS NULL", (cluster,)).rowcount

    # ---- reading ------------------------------------------------------------------------

    def pending(self, cluster: str | None = ANY_CLUSTER, after: int = 0, limit: int | None = None) -> list[Kept]:
        """Kept rows in the order they were kept: all, or those of ``cluster`` (None: unknown)."""
        where, params = self._where(cluster)
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE seq > ?{where} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, (after, *params)).fetchall()
        return [
            Kept(seq, topic, key, value, [(k, bytes.fromhex(v)) for k, v in json.loads(headers)], error, kept_at, cl)
            for seq, topic, key, value, headers, error, kept_at, cl in rows
        ]

    def counts(self, cluster: str | None = ANY_CLUSTER) -> dict[ChainKey, int]:
        """How many keyed rows wait per (topic, key)."""
        where, params = self._where(cluster)
        with self._lock:
            rows = self._db.execute(
                f"SELECT topic, key, COUNT(*) FROM outbox WHERE key IS NOT NULL{where} GROUP BY topic, key", params
            ).fetchall()
        return {(topic, bytes(key)): n for topic, key, n in rows}

    def clusters(self) -> dict[str | None, int]:
        """How many rows wait per cluster id (None: kept before any cluster answered)."""
        with self._lock:
            return dict(self._db.execute("SELECT cluster, COUNT(*) FROM outbox GROUP BY cluster").fetchall())

    def count(self, cluster: str | None = ANY_CLUSTER) -> int:
        where, params = self._where(cluster)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM outbox WHERE 1{where}", params).fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    # ---- plumbing -----------------------------------------------------------------------

    @staticmethod
    def _where(cluster: str | None) -> tuple[str, tuple[str, ...]]:
        if cluster is ANY_CLUSTER:
            return "", ()
        if cluster is None:
            return " AND cluster IS NULL", ()
        return " AND cluster = ?", (cluster,)

    @contextmanager
    def resending(self) -> Iterator[bool]:
        """An exclusive claim on resending this file, across processes; yields False if taken."""
        fd = os.open(f"{self.path}.resend-lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OutboxRelay:
    """Re-sends the producer's kept records by itself once the broker is back, while the process runs."""

    def __init__(self, producer: OrderedProducer, reachable: Callable[[], bool], interval: float = 2.0) -> None:
        self.producer, self.reachable, self.interval = producer, reachable, interval
        self.resent = 0
        self.last: Resent | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def _run(self) -> None:
        announced = False
        while not self._stop.wait(self.interval):
            if not announced and (cluster := self.producer.cluster_id(timeout=0)):
                announced = True  # say once what this process will not send
                others = {c: n for c, n in self.producer.outbox.clusters().items() if c != cluster}
                if others:
                    log.warning("Outbox %s: %s; only rows of cluster %s are resent here", self.producer.outbox.path,
                                ", ".join(f"{n} row(s) for cluster {c or '(unknown)'}" for c, n in others.items()),
                                cluster)
            if not self.producer.has_kept() or not self.reachable():
                continue
            try:
                report = self.producer.resend_kept(stop=self._stop)
            except Exception as exc:  # the broker went away again: keep the rest for the next round
                log.warning("Outbox resend stopped: %s", exc)
                continue
            self.resent += report.sent
            if report.sent:
                log.info("Outbox: %s", report.describe())
            self.last = report

    def start(self) -> OutboxRelay:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the record in hand; what is not yet acknowledged stays in the outbox."""
        self._stop.set()
        self._thread.join(timeout=timeout)
