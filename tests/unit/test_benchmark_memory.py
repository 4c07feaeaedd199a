"""The pure parts of ``benchmarks/memory.py``: the poison mix and the deep size of order state;
and the bound on the view's read-ahead that the memory rows found missing."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer

from order_system.config import Settings
from order_system.domain.changelog import Outcome, Verdict
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.kafka.consumer import Received
from order_system.services.processor import OrderProcessor
from order_system.state import view

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import memory  # noqa: E402


def received(records: list[memory.Record]) -> list[Received]:
    return [Received("orders", 0, offset, key.decode() if key else None, 0, dict(headers), value, key)
            for offset, (key, value, headers) in enumerate(records)]


def test_one_record_in_a_hundred_is_poison_spread_evenly_and_each_is_dead_lettered() -> None:
    clean = list(memory.lifecycles(250))  # 1,000 events
    mixed, count = memory.with_poison(clean)
    assert len(mixed) == len(clean) == 1000 and count == 10
    batch = OrderProcessor(instance_id="unit").process(received(mixed), Settings(), lambda seconds: None)
    verdicts = [Verdict.from_json(out.value) for out in batch.outputs if out.topic == Settings().verdicts_topic]
    rejected = [n for n, v in enumerate(verdicts) if v.outcome is not Outcome.ACCEPTED]
    assert rejected == list(range(99, 1000, 100))  # every 100th record, and only those
    assert batch.dead_lettered == count
    reasons = Counter(v.reason for v in verdicts if v.outcome is Outcome.REJECTED)
    assert sorted(reasons.values()) == [2, 2, 3, 3], reasons  # four kinds in turn


def test_deep_size_counts_each_object_once_and_scales_a_sample() -> None:
    shared = "x" * 1000
    orders = {f"o{n}": ("y" * 100 + str(n), shared) for n in range(40_000)}
    count, total = memory.state_bytes([orders])
    per_order = (total - memory.allocated(sys.getsizeof(orders))) / count
    key, (own, _) = next(iter(orders.items()))
    alone = sum(memory.allocated(sys.getsizeof(o)) for o in (key, own, orders[key]))
    assert count == 40_000
    assert alone <= per_order < alone + 5  # the shared string counted once, in a sample of 20,000
    assert memory.allocated(1) == 16 and memory.allocated(513) == 528


def test_the_view_reads_ahead_a_few_mebibytes_not_librdkafkas_64() -> None:
    config = view._config(Settings(bootstrap_servers="127.0.0.1:9"))  # nothing is asked of a broker
    assert config["queued.max.messages.kbytes"] <= 8192
    Consumer(config).close()  # librdkafka accepts it (fetch sizes adjust to it)


def test_events_given_the_same_fields_share_one_fields_set_and_keep_their_own_meaning() -> None:
    created = OrderEvent.created("shared1", "c1")
    read = [OrderEvent.from_json(OrderEvent.created(f"shared{n}", "c1").to_json()) for n in range(3)]
    assert read[0].__pydantic_fields_set__ is read[2].__pydantic_fields_set__  # one set, not one each
    bare = OrderEvent(order_id="shared9", customer_id="c1", status=OrderStatus.CREATED, version=1)
    assert bare.model_fields_set == {"order_id", "customer_id", "status", "version"}
    assert created.model_fields_set == {"order_id", "customer_id", "status", "version", "description"}
    assert read[1].model_fields_set == set(OrderEvent.model_fields) - {"items"}  # the wire gives every field but items
    moved = read[0].model_copy(update={"version": 2})
    assert moved.__pydantic_fields_set__ is not read[0].__pydantic_fields_set__
    assert read[0].version == 1 and read[0].model_fields_set == set(OrderEvent.model_fields) - {"items"}
