"""``OrderedProducer``: the core producer, hardened so that nothing acknowledged to a user is lost
or reordered through an outage of the broker.

**One record of a key in flight.** An order's next event is handed to librdkafka only once the
previous one was acknowledged; records of different keys still pipeline. If librdkafka held
several records of a key, one that timed out while the broker was away could be overtaken by a
later one sent once the broker is back, and its resend would land behind it.

**Nothing lost.** A record the broker did not acknowledge within the delivery timeout is kept
in an outbox (``state/outbox.py``, a SQLite file), with every record of its key waiting behind
it, and its future still fails. Later records of that key go straight to the outbox behind them
until ``resend_kept`` has delivered every kept record of the key (chained again, oldest first).
Nothing is remembered about a key once its last record was acknowledged.

**Kept records belong to a cluster.** The producer learns the cluster id from the broker's
metadata and stores it with each kept row; ``resend_kept`` sends only the rows of the cluster it
is connected to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import wait
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ContextManager, Protocol

from ..config import Settings
from ..domain.errors import PublishError
from .producer import OrderProducer, Sending

log = logging.getLogger("order_system.kafka.ordering")

ANY_CLUSTER: Any = object()  # an outbox query over every cluster (and rows of no known cluster)
ChainKey = tuple[str, bytes]  # (topic, key): the records that must stay in order
# topic, key, value, headers, error
Row = tuple[str, "bytes | None", "bytes | None", "list[tuple[str, bytes]] | None", str]


class KeptRow(Protocol):
    seq: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class KeptRecords(Protocol):
    """What the producer needs of its outbox (``state.outbox.Outbox`` is one)."""

    path: Any

    def keep_many(self, rows: Sequence[Row], cluster: str | None) -> list[int]: ...

    def remove_many(self, seqs: Sequence[int]) -> None: ...

    def claim(self, seqs: Sequence[int], cluster: str) -> None: ...

    def adopt_unknown(self, cluster: str) -> int: ...

    def pending(self, cluster: str | None = ..., after: int = 0, limit: int | None = None) -> Sequence[KeptRow]: ...

    def counts(self, cluster: str | None = ...) -> dict[ChainKey, int]: ...

    def count(self, cluster: str | None = ...) -> int: ...

    def clusters(self) -> dict[str | None, int]: ...

    def resending(self) -> ContextManager[bool]: ...


@dataclass(frozen=True)
class Resent:
    """What one resend did."""

    cluster: str
    sent: int
    left: int  # rows of this cluster still kept (the broker went away again, or were kept meanwhile)
    other_clusters: int  # rows meant for other clusters: not sent here
    unknown_cluster: int  # rows kept before any cluster answered: sent only with ``adopt_unknown``
    busy: bool = False  # another resend (this or another process) was running: nothing done

    def describe(self) -> str:
        if self.busy:
            return "another resend of this outbox is running; nothing sent"
        text = f"resent {self.sent} record(s), in order; {self.left} left for cluster {self.cluster}"
        if self.other_clusters:
            text += f"; {self.other_clusters} record(s) belong to other clusters (not sent here)"
        if self.unknown_cluster:
            text += (f"; {self.unknown_cluster} record(s) of an unknown cluster "
                     "(`order-system outbox resend --adopt` sends them here)")
        return text


class Chained(Sending):
    """A record that may wait behind the one of its key in flight, or be an outbox row resent."""

    seq: int | None = None  # the outbox row this record resends
    chained = False  # sent only once the previous record of its key was acknowledged

    @property
    def chain(self) -> ChainKey | None:
        return (self.topic, self.key) if self.key is not None else None

    @classmethod
    def row(cls, row: KeptRow, condition: threading.Condition) -> Chained:
        """An outbox row on its way again."""
        record = cls(row.topic, row.key, row.value, row.headers, None, None, None, condition)
        record.seq = row.seq
        return record


class OrderedProducer(OrderProducer):
    """An ``OrderProducer`` that keeps each key's records in order through any outage and keeps
    what the broker does not acknowledge in ``outbox`` (see the module docstring)."""

    record_type = Chained
    keeps_bytes = True

    def __init__(self, settings: Settings, outbox: KeptRecords, *, topic: str | None = None,
                 extra_config: Mapping[str, Any] | None = None) -> None:
        self.outbox = outbox
        self._chains: dict[ChainKey, deque[Chained]] = {}  # key -> records waiting behind the one in flight
        self._ready: deque[Chained] = deque()  # next of their chain, left for the callback thread
        self._held = outbox.counts(ANY_CLUSTER)  # key -> rows of it kept; until the cluster is known, any
        self._acked_rows: list[int] = []  # outbox rows acknowledged, not yet deleted
        self._rows_blocked: set[ChainKey] = set()  # keys whose resent row failed in this resend
        self._cluster: str | None = None
        self._cluster_known = threading.Event()
        self._unclaimed: list[int] = []  # rows kept before the cluster id was known
        self._relaying = threading.Lock()
        super().__init__(settings, topic=topic, extra_config=extra_config)
        threading.Thread(target=self._learn_cluster, name="producer-cluster-id", daemon=True).start()

    def holds(self, order_id: str, topic: str | None = None) -> bool:
        """Whether an event of this order waits in the outbox (later ones would queue behind it)."""
        with self._lock:
            return (topic or self.topic, order_id.encode()) in self._held

    @property
    def remembered_keys(self) -> int:
        """How many keys the producer tracks (one in flight, or kept): 0 once all is delivered."""
        with self._lock:
            return len(self._chains.keys() | self._held.keys())

    # ---- chaining -----------------------------------------------------------------------

    def _send(self, record: Sending) -> Sending:
        assert isinstance(record, Chained)
        chain, kept = record.chain, None
        with self._lock:
            if self._closed:
                raise PublishError("the producer is closed")
            if record.seq is not None and chain in self._rows_blocked:
                kept = True  # an older row of its key failed in this resend: it must not overtake it
            elif chain is not None and record.seq is None and chain in self._held:
                kept = self._keep_locked([record], "an earlier record with this key is kept in the outbox")
            else:
                self._unresolved += 1
                if self._unresolved == 1:
                    self._lock.notify_all()
                if chain is not None:
                    record.chained = True
                    if chain in self._chains:  # one of its key is in flight: wait behind it
                        self._chains[chain].append(record)
                        return record
                    self._chains[chain] = deque()
        if kept is not None:
            self._resolve_failed([record], "not sent: an earlier record of its key waits in the outbox", kept)
            return record
        self._dispatch(record)
        self._serve_inline()
        return record

    def _delivered(self, record: Sending, error: Any, message: Any) -> None:
        assert isinstance(record, Chained)
        if error is not None:
            log.error("Publish failed for %s: %s", record.label, error.str())
            self._failed(record, error.str(), keep=True)
            return
        with self._lock:
            self._unresolved -= 1
            following = self._next_locked(record.chain if record.chained else None)
            if record.seq is not None:  # a resent outbox row: deleted once the resend collects it
                self._acked_rows.append(record.seq)
                if record.chain is not None:
                    self._release_locked(record.chain)
        if following is not None and not self._dispatch(following, wait=False):
            with self._lock:  # librdkafka's queue is full: the callback thread sends it
                self._ready.append(following)
                self._lock.notify_all()
        if record.seq is None:
            self._resolve(record, message.partition(), message.offset())
        else:
            record.landed(message.partition(), message.offset())

    def _failed(self, record: Sending, reason: str, *, keep: bool) -> None:
        """``record`` and every record waiting behind it fail; the new ones among them are kept
        in the outbox, in order (unless ``keep`` is False: the client refused it outright)."""
        assert isinstance(record, Chained)
        with self._lock:
            behind = list(self._chains.pop(record.chain, ())) if record.chained and record.chain else []
            self._unresolved -= 1 + len(behind)
            kept = keep and self._keep_locked([r for r in [record, *behind] if r.seq is None], reason)
            for row in [r for r in [record, *behind] if r.seq is not None]:  # they stay in the outbox
                if row.chain is not None:
                    self._rows_blocked.add(row.chain)  # later rows of the key must not overtake it
        self._resolve_failed([record], f"was not delivered to {record.topic}: {reason}", kept)
        self._resolve_failed(behind, "not sent: an earlier event of it was not delivered", kept)

    def _resolve_failed(self, records: list[Chained], why: str, kept: bool) -> None:
        for record in records:
            message = f"{record.label} {why}"
            if record.seq is not None:
                message += f"; it stays in the outbox {self.outbox.path}"
            elif kept:
                message += f"; kept in the outbox {self.outbox.path}"
            self._fail(record, message)

    def _next_locked(self, chain: ChainKey | None) -> Chained | None:
        """The record waiting behind ``chain``'s acknowledged one, or None (then the key is forgotten)."""
        if chain is None:
            return None
        waiting = self._chains.get(chain)
        if waiting:
            return waiting.popleft()
        self._chains.pop(chain, None)
        return None

    def _keep_locked(self, records: list[Chained], reason: str) -> bool:
        """Write ``records`` to the outbox (under the lock, so rows of a key keep their order)."""
        if not records:
            return True
        try:
            seqs = self.outbox.keep_many([(r.topic, r.key, r.value, r.headers, reason) for r in records], self._cluster)
        except Exception:
            log.exception("Could not keep %d record(s) in the outbox %s", len(records), self.outbox.path)
            return False
        if self._cluster is None:
            self._unclaimed.extend(seqs)
        for record in records:
            if record.chain is not None:
                self._held[record.chain] = self._held.get(record.chain, 0) + 1
        return True

    def _release_locked(self, chain: ChainKey) -> None:
        left = self._held.get(chain, 0) - 1
        if left > 0:
            self._held[chain] = left
        else:
            self._held.pop(chain, None)  # every kept record of the key is delivered: it flows again

    def _between_polls(self) -> None:
        while True:
            with self._lock:
                if not self._ready:
                    return
                record = self._ready.popleft()
            self._dispatch(record)

    def _after_close(self) -> None:
        self._remove_acked()

    # ---- the outbox, per cluster --------------------------------------------------------

    def _learn_cluster(self) -> None:
        """Ask the broker for its cluster id until it answers (or the producer closes)."""
        while not self._closed:
            try:
                cluster = self._producer.list_topics(timeout=2.0).cluster_id
            except Exception:
                cluster = None
            if cluster:
                with self._lock:
                    self._cluster = cluster
                    if self._unclaimed:
                        self.outbox.claim(self._unclaimed, cluster)
                    self._unclaimed = []
                    self._held = self.outbox.counts(cluster)
                self._cluster_known.set()
                log.info("Connected to Kafka cluster %s", cluster)
                return
            time.sleep(1.0)  # nothing to wait on but the broker

    def cluster_id(self, timeout: float = 15.0) -> str | None:
        """The id of the Kafka cluster this producer talks to; None if it has not answered yet."""
        self._cluster_known.wait(timeout)
        return self._cluster

    def has_kept(self) -> bool:
        """Whether rows of this producer's cluster wait in the outbox."""
        return self._cluster is not None and self.outbox.count(self._cluster) > 0

    def resend_kept(self, *, batch: int = 10_000, timeout: float = 120.0, adopt_unknown: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    stop: threading.Event | None = None) -> Resent:
        """Send the outbox rows of this producer's cluster again; each key's rows oldest first.

        Rows go out in batches, asynchronously, chained per key like live records; a row is
        deleted only once acknowledged. When a row fails (the broker went away again) the rows
        of its key stay, and the resend stops after the batch. ``adopt_unknown`` first ties rows
        of an unknown cluster (kept before any broker answered, or by an older version) to this one.
        ``stop`` ends the resend early (between batches, or while waiting for acknowledgements).
        """
        outbox = self.outbox
        cluster = self.cluster_id()
        if cluster is None:
            raise PublishError(f"no Kafka cluster answered at {self.settings.bootstrap_servers}; nothing resent")
        with self._relaying, outbox.resending() as mine:
            if not mine:
                return self._report(cluster, 0, busy=True)
            with self._lock:
                if adopt_unknown:
                    outbox.adopt_unknown(cluster)
                    self._held = outbox.counts(cluster)
                self._rows_blocked = set()
            total, sent, after = outbox.count(cluster), 0, 0
            while rows := outbox.pending(cluster, after=after, limit=batch):
                records = [self._send(Chained.row(row, self._futures)) for row in rows]
                finished = _settled(records, timeout, stop)
                sent += self._remove_acked()
                if progress:
                    progress(sent, total)
                if not finished or any(r.exception(0) for r in records):
                    break
                after = rows[-1].seq
            with self._lock:  # counts from the rows themselves, now that every ack is applied
                if not self._chains and self._unresolved == 0 and not self._acked_rows:
                    self._held = outbox.counts(cluster)
            return self._report(cluster, sent)

    def _remove_acked(self) -> int:
        with self._lock:
            acked, self._acked_rows = self._acked_rows, []
        if acked:
            self.outbox.remove_many(acked)
        return len(acked)

    def _report(self, cluster: str, sent: int, busy: bool = False) -> Resent:
        per_cluster = self.outbox.clusters()
        others = sum(n for c, n in per_cluster.items() if c not in (cluster, None))
        return Resent(cluster, sent, per_cluster.get(cluster, 0), others, per_cluster.get(None, 0), busy)


def _settled(records: list[Chained], timeout: float, stop: threading.Event | None) -> bool:
    """Wait until every record was acknowledged or failed; False on timeout or ``stop``."""
    deadline, pending = time.monotonic() + timeout, set(records)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return False
        _, pending = wait(pending, min(left, 0.2))
    return True

