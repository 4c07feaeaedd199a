"""Throughput of order_system's producer and consumer runner against bare confluent-kafka.

    .venv/bin/python benchmarks/throughput.py [--events 20000]

Each figure is a ratio to a baseline measured in the same run on the same broker, so a busy
machine moves both sides alike: the bare client is the baseline, order_system's adapter (JSON
encoding, headers, futures, decoding, the exactly-once order-processor) is the candidate.
``benchmarks/compare.py`` runs the whole table of issue 13 (Kafka's own tools, kafka-python, HTTP).
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Consumer, Producer

from order_system import OrderProcessor, OrderProducer, Settings, create_topics, delete_topics, plan_lifecycles
from order_system.bootstrap import runner_for


def timed(action) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def bare_publish(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
    for key, value in payloads:
        while True:
            try:
                producer.produce(settings.topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def ours_publish(settings: Settings, events: list) -> None:  # type: ignore[type-arg]
    with OrderProducer(settings) as producer:
        futures = [producer.publish(e) for e in events]
    assert all(f.done() and f.exception() is None for f in futures)


def bare_consume(settings: Settings, count: int) -> None:
    consumer = Consumer(settings.client_config(**{"group.id": f"bench-{uuid.uuid4().hex[:6]}",
                                                  "auto.offset.reset": "earliest"}))
    consumer.subscribe([settings.topic])
    seen = 0
    while seen < count:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            seen += 1
    consumer.close()


def ours_consume(settings: Settings, count: int) -> None:
    """The order-processor as ``serve`` runs it (``runner_for``), on its own instance id."""
    processor = OrderProcessor(instance_id=f"bench-{uuid.uuid4().hex[:6]}")
    runner = runner_for(processor, settings)
    with runner:
        assert runner.wait_until(lambda: runner.processed >= count, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    events = plan_lifecycles(args.events // 4, seed=1, cancel_every=0)
    base = Settings.from_env()
    bare_topic, our_topic = (base.with_topic(f"bench-{name}-{uuid.uuid4().hex[:6]}") for name in ("bare", "ours"))
    for topic in (bare_topic, our_topic):
        create_topics(topic)
    try:
        payloads = [(e.key(), e.to_json()) for e in events]
        t_bare_pub = timed(lambda: bare_publish(bare_topic, payloads))
        t_ours_pub = timed(lambda: ours_publish(our_topic, events))
        t_bare_con = timed(lambda: bare_consume(bare_topic, len(events)))
        t_ours_con = timed(lambda: ours_consume(our_topic, len(events)))
    finally:
        for topic in (bare_topic, our_topic):
            delete_topics(topic, list(topic.all_topics))
    n = len(events)
    print(f"{n} events, 3 partitions, broker {base.bootstrap_servers}")
    print(f"{'':<10}{'bare confluent-kafka':>22}{'order_system':>16}{'ratio':>8}")
    print(f"{'publish':<10}{n / t_bare_pub:>18,.0f} ev/s{n / t_ours_pub:>12,.0f} ev/s{t_ours_pub / t_bare_pub:>7.2f}x")
    print(f"{'consume':<10}{n / t_bare_con:>18,.0f} ev/s{n / t_ours_con:>12,.0f} ev/s{t_ours_con / t_bare_con:>7.2f}x")
    print("ratio = order_system's time / the bare client's time (lower is better; 1.00 = no overhead)")


if __name__ == "__main__":
    main()
