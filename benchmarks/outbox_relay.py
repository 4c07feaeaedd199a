"""Speed of the outbox relay against a bare confluent-kafka produce loop of the same records.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python benchmarks/outbox_relay.py [--records 100000]

The outbox is filled with ``--records`` kept events (whole order lifecycles, interleaved, tied
to the broker's cluster id). The baseline sends the same keys, values and headers with a bare
``confluent_kafka.Producer`` (idempotent, acks=all, linger 5 ms) and flushes. The candidate is
``OrderProducer.resend_kept``: it reads the rows in batches, sends them asynchronously with each
order's records chained (one in flight per order), and deletes each row once acknowledged.
Both run in the same process against the same broker, so a busy machine slows both alike; the
ratio and the relay's own rate are printed. The target is at least 5,000 records/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from order_system import OrderProducer, Settings, create_topics, delete_topics, plan_lifecycles
from order_system.kafka.ordering import OrderedProducer
from order_system.state.outbox import Outbox

TARGET_PER_SECOND = 5_000


def bare_send(settings: Settings, rows: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
    for topic, key, value, headers in rows:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0


def records_on(settings: Settings, topic: str) -> int:
    consumer = Consumer(settings.client_config(**{"group.id": f"bench-count-{uuid.uuid4().hex[:6]}"}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    events = plan_lifecycles(int(args.records / 3.7) + 1, seed=3)[: args.records]
    base = Settings.from_env()
    bare_topic, relay_topic = (base.with_topic(f"bench-{name}-{uuid.uuid4().hex[:6]}") for name in ("bare", "relay"))
    for settings in (bare_topic, relay_topic):
        create_topics(settings)
    try:
        with tempfile.TemporaryDirectory() as folder:
            with OrderProducer(relay_topic) as probe:
                cluster = probe.cluster_id()
            assert cluster, f"no cluster id from {base.bootstrap_servers}"
            outbox = Outbox(Path(folder) / "outbox.db")
            began = time.perf_counter()
            outbox.keep_many([(relay_topic.topic, e.key(), e.to_json(), e.headers(), "benchmark") for e in events],
                             cluster)
            t_keep = time.perf_counter() - began

            rows = [(bare_topic.topic, e.key(), e.to_json(), e.headers()) for e in events]
            began = time.perf_counter()
            bare_send(bare_topic, rows)
            t_bare = time.perf_counter() - began

            with OrderedProducer(relay_topic, outbox) as producer:
                began = time.perf_counter()
                report = producer.resend_kept()
                t_relay = time.perf_counter() - began
            assert report.sent == len(events) and len(outbox) == 0, report
            assert records_on(relay_topic, relay_topic.topic) == len(events)
    finally:
        for settings in (bare_topic, relay_topic):
            delete_topics(settings, list(settings.all_topics))

    n = len(events)
    rate = n / t_relay
    print(f"{n} kept records ({len({e.order_id for e in events})} orders) on {base.bootstrap_servers}")
    print(f"keeping them (one transaction):      {t_keep:7.2f} s  {n / t_keep:9.0f} records/s")
    print(f"bare confluent-kafka produce loop:   {t_bare:7.2f} s  {n / t_bare:9.0f} records/s  (baseline)")
    print(f"outbox relay (resend_kept):          {t_relay:7.2f} s  {rate:9.0f} records/s  "
          f"= {t_bare / t_relay:.2f}x the baseline's speed")
    verdict = "meets" if rate >= TARGET_PER_SECOND else "MISSES"
    print(f"the relay {verdict} the target of {TARGET_PER_SECOND} records/s")


if __name__ == "__main__":
    main()
