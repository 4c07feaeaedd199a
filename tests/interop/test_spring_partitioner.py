"""Our producers put every key on the partition Kafka's own Java client would pick."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import NewTopic

from order_system.config import Settings
from order_system.kafka.producer import OrderProducer
from order_system.local.spring_client import SpringClient
from order_system.kafka.topics import admin_client, delete_topics

pytestmark = pytest.mark.slow
COUNTS = (2, 3, 5, 12)


def sample_keys(n: int) -> list[str]:
    rng = random.Random(15)
    alphabet = string.ascii_lowercase + string.digits
    keys = ["".join(rng.choice(alphabet) for _ in range(8)) for _ in range(n)]
    return keys + ["abc12345", "a", "ü-ñ-東京-🙂", "x" * 64, "order with spaces", '"quoted"', "customer-123"]


@pytest.fixture
def topics(settings: Settings, unique: Callable[[str], str]) -> Iterator[dict[int, Settings]]:
    """One fresh topic per partition count."""
    made = {n: settings.with_topic(unique(f"test-partitioner-{n}")) for n in COUNTS}
    admin = admin_client(settings)  # keep a reference: the futures die with the client
    futures = admin.create_topics([NewTopic(s.topic, num_partitions=n, replication_factor=1)
                                                    for n, s in made.items()])
    for future in futures.values():
        future.result(timeout=30)
    yield made
    delete_topics(settings, [s.topic for s in made.values()])


def placed(settings: Settings, keys: list[str], **config: object) -> list[int]:
    """The partition the broker stored each key's record in, published by our producer."""
    with OrderProducer(settings, extra_config=config) as producer:
        futures = [producer.publish_raw(b"{}", key=key.encode()) for key in keys]
    return [future.result(timeout=60).partition for future in futures]


def test_our_partition_is_the_java_clients_for_every_key_and_partition_count(
        topics: dict[int, Settings], spring: SpringClient) -> None:
    keys = sample_keys(400)
    java = spring.partitions(keys, COUNTS)  # BuiltInPartitioner from the broker's own kafka-clients jar
    assert java[3][keys.index("abc12345")] == 0  # the example
    for n, settings in topics.items():
        ours = placed(settings, keys)
        wrong = [(k, o, j) for k, o, j in zip(keys, ours, java[n]) if o != j]
        assert not wrong, f"{len(wrong)} of {len(keys)} keys not on Java's partition with {n} partitions: {wrong[:5]}"
        assert set(ours) == set(range(n))


def test_librdkafkas_old_default_would_disagree(topics: dict[int, Settings], spring: SpringClient) -> None:
    """Why the setting matters: with CRC32 (librdkafka's default) most keys land elsewhere."""
    keys = sample_keys(200)
    java = spring.partitions(keys, [3])[3]
    crc = placed(topics[3], keys, partitioner="consistent_random")
    moved = sum(c != j for c, j in zip(crc, java))
    assert moved > len(keys) / 2, f"only {moved} of {len(keys)} keys moved"


def test_later_runs_need_neither_maven_nor_javac(spring: SpringClient) -> None:
    offline = SpringClient(mvn="/nonexistent/mvn", javac="/nonexistent/javac")
    assert offline.ready() and offline.classes_dir == spring.classes_dir
    assert offline.partitions(["abc12345"], [3]) == {3: [0]}
