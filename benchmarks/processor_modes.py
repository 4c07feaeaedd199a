"""What exactly once costs the order-processor: the section ``exactly once vs at least once``
of ``benchmarks/compare.py`` (events/s).

The same ``OrderProcessor`` decisions (``process(records, settings, sleep)`` returns a
``Batch``: its ``outputs`` and its ``on_commit``) are driven two ways over the same records:

- **exactly once**: ``runner_for(OrderProcessor(...))``, as ``serve`` runs it: one transaction
  per batch holding the outputs and the input offsets (``kafka/transactions.py``);
- **at least once** (``at_least_once`` here): a plain consumer (``enable.auto.commit`` false)
  and a plain idempotent producer, no transactions. Per batch: produce every output, ``flush``,
  commit the batch's offsets synchronously, then ``batch.on_commit()``. The same batch size
  (``BATCH_SIZE``), linger (5 ms), consumer settings, state restore on assignment, topics and partitions.

Each round loads two fresh topics with the same lifecycles (not timed); on the first, raw
``consume(500)`` (the baseline) then the exactly-once processor, on the second the at-least-once
one. Three rounds; each figure is the median of its three, and the ratios asked for (issue 23:
the processor at least 0.10x raw ``consume(500)`` with exactly once on) are the medians of the
ratios taken within each round.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from order_system import OrderProcessor, Settings
from order_system.kafka.batches import ends
from order_system.kafka.records import Received, take_batch
from order_system.kafka.transactions import BATCH_SIZE
from report import Row

SECTION = "exactly once vs at least once"
ROUNDS = 3
LINGER_MS = 5  # the transactional runner's producer lingers as long
Rate = Callable[[Settings, int], Any]  # a row of compare.py: events/s, or (events/s, note)


def at_least_once(settings: Settings, count: int) -> tuple[float, str]:
    """The order-processor's decisions without transactions: produce, flush, commit, on_commit.
    Events/s from the first batch done to the last (the exactly-once row is timed alike)."""
    from order_system.bootstrap import fewer_collections
    from order_system.kafka.changelog_reader import restore_orders

    fewer_collections()  # as processor_runner does for the exactly-once one
    processor = OrderProcessor(instance_id=f"bench-alo-{uuid.uuid4().hex[:8]}")
    consumer = Consumer(settings.client_config(**{
        "group.id": processor.group_id, "client.id": "bench-at-least-once", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 500, "queued.max.messages.kbytes": 4096}))
    failed: list[object] = []  # delivery errors: an output lost would make the figure a lie

    def delivered(error: object, _: object) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all",
                                                    "linger.ms": LINGER_MS, "on_delivery": delivered}))

    def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
        processor.restore(restore_orders(settings, [p.partition for p in partitions if p.topic == settings.topic]))

    def revoked(_: Consumer, partitions: list[TopicPartition]) -> None:
        processor.forget(p.partition for p in partitions if p.topic == settings.topic)

    consumer.subscribe([settings.topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
    done = batches = 0
    began = None
    deadline = time.monotonic() + max(120.0, count / 200)
    try:
        while done < count and time.monotonic() < deadline:
            records = [Received.from_message(m) for m in take_batch(consumer, BATCH_SIZE, 0.25) if m.error() is None]
            if not records:
                continue
            batch = processor.process(records, settings, time.sleep)
            for output in batch.outputs:
                while True:
                    try:
                        producer.produce(output.topic, output.value, output.key,
                                         -1 if output.partition is None else output.partition, headers=output.headers)
                        break
                    except BufferError:
                        producer.poll(0.05)  # let the queue drain
            if producer.flush(60) != 0 or failed:
                raise RuntimeError(f"at least once: outputs not acknowledged: {failed[:3]}")
            consumer.commit(offsets=[TopicPartition(topic, partition, end)
                                     for (topic, partition), end in ends(records).items()], asynchronous=False)
            batch.on_commit()
            done += batch.handled + batch.skipped
            batches += 1
            if began is None:
                began = time.perf_counter()
        took = time.perf_counter() - (began or time.perf_counter())
    finally:
        consumer.close()
        producer.flush(10)
    return done / took, f"{done} of {count} records in {batches} batches"


def rows(events: int, fresh: Callable[[str], Settings], load: Callable[[Settings], int],
         raw_rate: Rate, exactly_once_rate: Rate, rounds: int = ROUNDS) -> Iterator[Row]:
    """``rounds`` rounds of raw consume(500), the exactly-once and the at-least-once processor,
    interleaved, each on freshly loaded topics; medians of the figures and of the per-round ratios."""
    rates: dict[str, list[float]] = {"raw": [], "exactly": [], "least": []}
    notes: dict[str, str] = {}

    def run(name: str, rate: Rate, settings: Settings, count: int) -> None:
        result = rate(settings, count)
        value, note = result if isinstance(result, tuple) else (result, "")
        rates[name].append(float(value))
        notes[name] = str(note)

    for round_ in range(rounds):
        first, second = fresh(f"eos-{round_}"), fresh(f"alo-{round_}")
        count = load(first)
        load(second)
        run("raw", raw_rate, first, count)
        run("exactly", exactly_once_rate, first, count)
        run("least", at_least_once, second, count)

    def figures(values: list[float], digits: int = 0) -> str:
        return ", ".join(f"{v:,.{digits}f}" for v in values)

    to_raw = [e / r for e, r in zip(rates["exactly"], rates["raw"])]
    to_least = [e / a for e, a in zip(rates["exactly"], rates["least"])]
    median = statistics.median
    each = f"median of {rounds} rounds of {events:,} events" if rounds > 1 else f"one round of {events:,} events"
    yield Row(SECTION, "raw consume(500) + store_offsets, median of rounds", median(rates["raw"]), "events/s", True,
              f"{each}; runs {figures(rates['raw'])}")
    yield Row(SECTION, "order-processor, exactly once (runner_for), median", median(rates["exactly"]),
              "events/s", False,
              f"{each}; runs {figures(rates['exactly'])}; vs raw consume(500) within each round: median "
              f"{median(to_raw):.3f}x ({figures(to_raw, 3)}; issue 23 asks at least 0.10x); last run: "
              f"{notes['exactly']}")
    yield Row(SECTION, "order-processor, at least once (no transactions), median",
              median(rates["least"]), "events/s", False,
              f"{each}; runs {figures(rates['least'])}; exactly once / at least once within each round: median "
              f"{median(to_least):.3f}x ({figures(to_least, 3)}); per batch: produce, flush, commit offsets "
              f"synchronously, on_commit; last run: {notes['least']}")
