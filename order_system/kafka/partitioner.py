"""The partition Kafka's Java client picks for a key, computed here without asking the broker.

Java's ``BuiltInPartitioner.partitionForKey`` (and librdkafka's ``murmur2_random``, which every
producer of this package uses, see ``Settings.producer_config``) put a keyed record on
``(murmur2(key) & 0x7fffffff) % partitions``. The view uses it to know which partition of
``order-state`` (the same number as on ``order-events``) holds an order.
"""

from __future__ import annotations

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data``, as Java's signed 32-bit ``Utils.murmur2`` returns it."""
    h = (SEED ^ len(data)) & MASK
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * M) & MASK
        k ^= k >> 24
        h = ((h * M) & MASK) ^ ((k * M) & MASK)
    if whole < len(data):  # the last 1-3 bytes, little-endian, as Java's switch falls through them
        h = ((h ^ int.from_bytes(data[whole:], "little")) * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition of a keyed record (a str key is UTF-8 encoded, as the producers do)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions
