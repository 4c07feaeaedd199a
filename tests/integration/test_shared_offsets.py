"""SharedEndOffsets against the real broker: many request threads share end-offset queries, and
each still learns an end at least as recent as its own query would have told it."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from order_system.config import Settings
from order_system.kafka.offsets import retrying
from order_system.kafka.offsets import SharedEndOffsets

THREADS, PER_THREAD = 16, 25


def test_every_answer_covers_what_was_written_before_the_request(topic_settings: Settings) -> None:
    admin = AdminClient(topic_settings.client_config())
    shared = SharedEndOffsets(topic_settings.topic, lambda: admin, lambda client: None)
    producer = Producer(topic_settings.producer_config())
    stale: list[tuple[int, int, int]] = []
    failed: list[BaseException] = []
    start = threading.Barrier(THREADS)
    retrying(lambda: shared.end_offsets(range(topic_settings.partitions), timeout=30), 30)  # leaders settled

    def client(n: int) -> None:
        partition = n % topic_settings.partitions
        acknowledged: list[int] = []
        try:
            start.wait(30)
            for i in range(PER_THREAD):
                producer.produce(topic_settings.topic, key=f"k{n}".encode(), value=b"x", partition=partition,
                                 on_delivery=lambda err, msg: acknowledged.append(msg.offset()))
                while len(acknowledged) <= i:  # this record is written (acks=all) before asking
                    producer.poll(0.01)
                end = shared.end_offsets([partition], timeout=30)[partition]
                if end <= acknowledged[i]:
                    stale.append((partition, acknowledged[i], end))
        except (KafkaException, threading.BrokenBarrierError) as exc:
            failed.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    shared.stop()
    assert not failed, failed
    assert not stale, f"answers older than a record acknowledged before the request: {stale[:5]}"
    assert 0 < shared.rounds <= THREADS * PER_THREAD


def test_an_unknown_partition_is_an_error_for_its_requests(topic_settings: Settings) -> None:
    admin = AdminClient(topic_settings.client_config())
    shared = SharedEndOffsets(topic_settings.topic, lambda: admin, lambda client: None, attempt_seconds=1.0)
    try:
        # a topic created a moment ago may answer NOT_LEADER first: callers ask again while it settles
        assert retrying(lambda: shared.end_offsets([0], timeout=30), 30)[0] >= 0
        try:
            shared.end_offsets([topic_settings.partitions + 5], timeout=30)
        except KafkaException as exc:
            assert exc.args[0].code() != 0
        else:
            raise AssertionError("a partition that does not exist got an end offset")
    finally:
        shared.stop()
