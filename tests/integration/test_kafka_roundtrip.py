"""One keyed message through the real broker: the foundation everything else stands on."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer

from order_system.config import Settings
from order_system.kafka.topics import create_topics, delete_topics, partition_count


def test_keyed_message_round_trip() -> None:
    settings = Settings.from_env().with_topic(f"roundtrip-{uuid.uuid4().hex[:8]}")
    assert set(create_topics(settings).values()) == {"created"}
    assert set(create_topics(settings).values()) == {"exists"}  # idempotent
    assert partition_count(settings) == 3
    try:
        delivered: list = []
        producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all"}))
        producer.produce(settings.topic, key=b"order-42", value=b'{"hello": "kafka"}',
                         on_delivery=lambda e, m: delivered.append((e, m)))
        assert producer.flush(30) == 0
        [(error, sent)] = delivered
        assert error is None and 0 <= sent.partition() < 3

        consumer = Consumer(settings.client_config(**{"group.id": f"rt-{uuid.uuid4().hex[:8]}",
                                                      "auto.offset.reset": "earliest"}))
        consumer.subscribe([settings.topic])
        try:
            received = None
            for _ in range(60):  # bounded: at most 60 polls of 1 s
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    received = message
                    break
        finally:
            consumer.close()
        assert received is not None, "the message did not come back within 60 s"
        assert received.key() == b"order-42"
        assert received.value() == b'{"hello": "kafka"}'
        assert (received.partition(), received.offset()) == (sent.partition(), sent.offset())
    finally:
        delete_topics(settings, list(settings.all_topics))
