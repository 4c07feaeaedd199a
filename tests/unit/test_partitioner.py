"""Our murmur2 partition is Kafka's Java client's (BuiltInPartitioner)."""

from __future__ import annotations

import pytest

from order_system.kafka.partitioner import murmur2, partition_for

# Apache Kafka's UtilsTest.testMurmur2 vectors (Java's signed results)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_MURMUR2.items())
def test_murmur2_is_javas(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_the_interop_tests_example_key() -> None:
    """tests/interop/test_spring_partitioner.py: Java's BuiltInPartitioner puts abc12345 on 0 of 3."""
    assert partition_for("abc12345", 3) == 0


def test_a_str_key_is_its_utf8_bytes_and_every_partition_is_reached() -> None:
    assert partition_for("ü-ñ-東京-🙂", 7) == partition_for("ü-ñ-東京-🙂".encode(), 7)
    assert {partition_for(f"order-{i}", 5) for i in range(200)} == set(range(5))
    with pytest.raises(ValueError):
        partition_for("x", 0)
