"""Counting what the log cleaner still has to remove (pure: records stand in for consumed messages)."""

from __future__ import annotations

from dataclasses import dataclass

from order_system.kafka.compaction import records_per_key, superseded


@dataclass
class Record:
    p: int
    o: int
    k: bytes | None

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def key(self) -> bytes | None:
        return self.k


LOG = [Record(0, 0, b"a"), Record(0, 1, b"b"), Record(0, 2, b"a"), Record(0, 5, b"a"),
       Record(1, 0, b"c"), Record(1, 3, b"c")]


def test_superseded_counts_records_with_a_later_record_of_their_key_in_the_partition() -> None:
    assert superseded(LOG) == 3  # a twice on partition 0, c once on partition 1
    assert records_per_key(LOG) == {b"a": 3, b"b": 1, b"c": 2}


def test_superseded_below_a_boundary_ignores_later_records_and_other_partitions() -> None:
    assert superseded(LOG, {0: 5}) == 1  # offsets 0..4 of partition 0: a at 0 and 2
    assert superseded(LOG, {0: 2, 1: 4}) == 1  # partition 0: a, b (none twice); partition 1: c twice
    assert superseded(LOG, {}) == 0


def test_a_compacted_log_has_nothing_superseded() -> None:
    assert superseded([Record(0, 2, b"a"), Record(0, 7, b"b"), Record(1, 9, b"a")]) == 0
