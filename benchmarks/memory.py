"""Issue 13's memory and poison rows of ``benchmarks/compare.py`` (``--only memory,poison``).

**memory**: for each size (full run 10,000, 100,000 and 1,000,000 events; whole lifecycles of
four events each, so a quarter as many orders) a topic is loaded, then a fresh Python process
runs the exactly-once order-processor (``runner_for(OrderProcessor(...))``, as ``serve`` runs
it) and an ``OrderView`` over what it writes, until both hold every order. With both still
running it reads its RSS, then the bytes of each one's order state: a deep size of the
processor's and of the view's dicts of orders (every object reachable from them once, its
size rounded up the way CPython's allocator hands it out; above 20,000 orders an even sample
scaled up). What is left, RSS less both states, is everything else (interpreter, libraries,
librdkafka's buffers, bookkeeping); it should be the same at every size, within +-10 %. The
1,000,000-event run takes a few minutes (loading the topic and processing it).

**poison**: the order-processor's events/s on a topic where every 100th record is poison (a
mix: bytes that are no JSON, an event with an unknown status, a well-formed event for an
order that was never created, an event without a key), against a clean topic of the same
size in the same run. The dead-letter topic is read back afterwards (read_committed): it must
hold exactly one dead letter per poison record, each with its reason.

Run through compare.py; ``python benchmarks/memory.py --child TOPIC EVENTS`` is the measuring
process of one size (prints one JSON line).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

from confluent_kafka import Producer

from order_system import OrderProcessor, OrderView, Settings, plan_lifecycles
from order_system.domain.events import OrderEvent
from order_system.kafka.transactions import TransactionalRunner

Record = tuple["bytes | None", bytes, list[tuple[str, bytes]]]
SIZES = {"full": (10_000, 100_000, 1_000_000), "quick": (10_000, 30_000, 100_000), "smoke": (1_000, 2_000)}
EVENTS_PER_ORDER = 4  # whole lifecycles: created, paid, shipped, delivered
CHUNK_ORDERS = 5_000  # lifecycles planned, encoded and produced at a time (the parent stays small)
SAMPLE_ORDERS = 20_000  # above this many orders a state's deep size is estimated from an even sample
FLAT = 0.10  # the residue may move this much (a fraction of the smallest run's) from 10k to 1M
POISON_EVERY = 100  # 1 %
SHARED = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)  # never per-order state
Row = tuple[str, str, float, str, bool, str]  # compare.Row's fields: section, path, value, unit, baseline, note


# ---- loading a topic -----------------------------------------------------------------------------


def lifecycles(orders: int) -> Iterator[Record]:
    """The records of ``orders`` whole lifecycles, planned and encoded a chunk at a time."""
    for start in range(0, orders, CHUNK_ORDERS):
        for event in plan_lifecycles(min(CHUNK_ORDERS, orders - start), cancel_every=0):
            yield event.key(), event.to_json(), event.headers()


def load(settings: Settings, records: Iterable[Record]) -> int:
    """Produce ``records`` to the settings' topic (acks=all, idempotent); how many were written."""
    producer = Producer(settings.producer_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
    count = 0
    for key, value, headers in records:
        while True:
            try:
                producer.produce(settings.topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    left = producer.flush(300)
    if left:
        raise RuntimeError(f"loading {settings.topic}: {left} records not acknowledged")
    return count


def poison(n: int, spare: list[OrderEvent]) -> Record:
    """The ``n``-th poison record, of four kinds in turn. ``spare`` is a lifecycle of an order no
    clean record mentions, so no poison record creates or changes an order."""
    created, shipped = spare[0], spare[2]
    kind = n % 4
    if kind == 0:  # bytes that are no JSON at all
        return created.key(), b"\x00\xff{poison " + str(n).encode() + b"\xfe", created.headers()
    if kind == 1:  # JSON, but not an event: an unknown status
        fields = json.loads(created.to_json())
        fields["status"] = "TELEPORTED"
        return created.key(), json.dumps(fields).encode(), created.headers()
    if kind == 2:  # a well-formed event the state machine forbids: shipped, never created
        return shipped.key(), shipped.to_json(), shipped.headers()
    return None, created.to_json(), created.headers()  # no key: events must be keyed by order id


def with_poison(clean: list[Record], every: int = POISON_EVERY) -> tuple[list[Record], int]:
    """``len(clean)`` records: the first ``len(clean) - len(clean) // every`` clean ones, with a
    poison record after each ``every - 1`` of them (spread evenly); and the poison count."""
    count = len(clean) // every
    spares = plan_lifecycles(count, interleave=False, cancel_every=0)
    kept = clean[:len(clean) - count]
    mixed: list[Record] = []
    for n in range(count):
        mixed.extend(kept[n * (every - 1):(n + 1) * (every - 1)])
        mixed.append(poison(n, spares[n * EVENTS_PER_ORDER:(n + 1) * EVENTS_PER_ORDER]))
    mixed.extend(kept[count * (every - 1):])
    return mixed, count


# ---- the measuring process -----------------------------------------------------------------------


def allocated(size: int) -> int:
    """Bytes CPython's allocator hands out for an object of ``size`` bytes: pymalloc rounds up to
    16 up to 512 bytes; above that malloc adds its 8-byte header and rounds up to 16."""
    return (size + 15) // 16 * 16 if size <= 512 else (size + 8 + 15) // 16 * 16


def deep_size(roots: Iterable[object], seen: set[int]) -> int:
    """Bytes of every object reachable from ``roots`` not in ``seen`` (which grows), classes,
    modules and functions excepted (shared by everything, they are no one's state)."""
    total, stack = 0, list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, SHARED):
            continue
        seen.add(id(obj))
        total += allocated(sys.getsizeof(obj))
        stack.extend(gc.get_referents(obj))
    return total


def state_bytes(partitions: Iterable[Mapping[str, Any]], containers: Iterable[object] = ()) -> tuple[int, int]:
    """(orders, bytes) of dicts of orders: each dict's own table, and its keys and values deep,
    once each (the ``containers`` holding the dicts counted shallow). Above ``SAMPLE_ORDERS``
    orders an even sample stands for the rest."""
    dicts = list(partitions)
    orders = sum(len(d) for d in dicts)
    step = max(1, math.ceil(orders / SAMPLE_ORDERS))
    seen: set[int] = set()
    total = sum(allocated(sys.getsizeof(c)) for c in [*containers, *dicts])
    seen.update(id(c) for c in [*containers, *dicts])
    walked = sampled = 0
    for d in dicts:
        items = list(d.items())
        for key, order in items[::step]:
            walked += deep_size((key, order), seen)
            sampled += 1
    return orders, total + (round(walked * orders / sampled) if sampled else 0)


def rss() -> tuple[int, int]:
    """This process's resident set and its peak, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def trim() -> int:
    """RSS once malloc gave the free memory it holds back to the system (``malloc_trim``, glibc):
    what the process holds but no longer uses, say librdkafka's buffers after a peak."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        pass
    return rss()[0]


def child(topic: str, events: int, timeout: float) -> dict[str, Any]:
    """Process ``topic`` (``events`` records) with the order-processor and an OrderView, as serve
    runs them, then measure (both still running)."""
    from order_system.bootstrap import runner_for

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings.from_env().with_topic(topic)
    started = rss()[0]
    processor = OrderProcessor(instance_id=f"bench-mem-{uuid.uuid4().hex[:8]}")
    runner = runner_for(processor, settings)
    began = time.monotonic()
    with runner:
        if not runner.wait_until(lambda: runner.processed + runner.skipped >= events or runner.fatal is not None,
                                 timeout=timeout):
            raise TimeoutError(f"{runner.processed} of {events} events processed in {timeout:.0f}s")
        if runner.fatal:
            raise RuntimeError(runner.fatal)
        took = time.monotonic() - began
        view = OrderView(settings).start(timeout)  # reads every order the processor committed
        try:
            return measure(processor, runner, view) | {"events": events, "seconds": took, "rss_start": started}
        finally:
            view.stop()


def measure(processor: OrderProcessor, runner: TransactionalRunner, view: OrderView) -> dict[str, Any]:
    """RSS, and the bytes of the processor's and the view's state, with both running."""
    gc.collect()
    resident, peak = rss()
    trimmed = resident - trim()
    with processor._changed:  # noqa: SLF001 - the state measured is the processor's own dicts
        p_orders, p_bytes = state_bytes(processor._orders.values(), [processor._orders])  # noqa: SLF001
        effects = len(processor._effects)  # noqa: SLF001
        e_bytes = deep_size([processor._effects], set())  # noqa: SLF001
    with view._changed:  # noqa: SLF001
        v_orders, v_bytes = state_bytes([view._orders])  # noqa: SLF001
        waiting = len(view._waiting)  # noqa: SLF001
    return {"processed": runner.processed, "dead_lettered": runner.dead_lettered,
            "rss": resident, "rss_peak": peak, "rss_free": trimmed,
            "processor_orders": p_orders, "processor_bytes": p_bytes,
            "view_orders": v_orders, "view_bytes": v_bytes, "effects_kept": effects, "effects_bytes": e_bytes,
            "failures_kept": len(runner.failures), "errors_kept": len(runner.errors), "view_waiting": waiting}


def measure_size(settings: Settings, events: int) -> dict[str, Any]:
    """Load ``events`` (whole lifecycles) into the topic, then measure them in a fresh process."""
    loaded = load(settings, lifecycles(events // EVENTS_PER_ORDER))
    timeout = max(300.0, loaded / 500)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    done = subprocess.run([sys.executable, __file__, "--child", settings.topic, str(loaded), str(timeout)],
                          capture_output=True, text=True, env=env, timeout=timeout + 600)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def residue(m: Mapping[str, Any]) -> int:
    return int(m["rss"] - m["processor_bytes"] - m["view_bytes"])


def settled(m: Mapping[str, Any]) -> int:
    """The residue less the processor's kept effects (a deque of up to 200,000, see the README) and
    less what malloc held free (``malloc_trim`` gave it back): what the rest of the process uses."""
    return int(residue(m) - m["effects_bytes"] - m["rss_free"])


def per_order(m: Mapping[str, Any], side: str) -> float:
    return m[f"{side}_bytes"] / max(1, m[f"{side}_orders"])


def memory_rows(sizes: Iterable[int], fresh: Callable[[str], Settings]) -> Iterator[Row]:
    """Measure each size; yield a residue row per size (the smallest is the baseline), then the
    state per order (processor as the baseline, the view beside it), and print the figures."""
    runs: list[dict[str, Any]] = []
    mb = 1 << 20
    for events in sizes:
        try:
            m = measure_size(fresh(f"mem-{events}"), events)
        except Exception as exc:  # a size that cannot run is reported, not hidden
            yield ("memory", f"RSS less order state, {events:,} events", float("nan"), "MB", not runs,
                   f"failed: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        runs.append(m)
        base = residue(runs[0])
        drift = residue(m) / base - 1
        print(f"    {events:>9,} events in {m['seconds']:.0f}s: RSS {m['rss'] / mb:,.1f} MB"
              f" (peak {m['rss_peak'] / mb:,.1f},"
              f" at start {m['rss_start'] / mb:,.1f}); processor {m['processor_orders']:,} orders"
              f" {m['processor_bytes'] / mb:,.1f} MB ({per_order(m, 'processor'):,.0f} B/order); view"
              f" {m['view_orders']:,} orders {m['view_bytes'] / mb:,.1f} MB ({per_order(m, 'view'):,.0f} B/order);"
              f" effects kept {m['effects_kept']:,} ({m['effects_bytes'] / mb:,.1f} MB); malloc held"
              f" {m['rss_free'] / mb:,.1f} MB free; residue {residue(m) / mb:,.1f} MB ({drift:+.1%}), less kept effects"
              f" and free memory {settled(m) / mb:,.1f} MB ({settled(m) / settled(runs[0]) - 1:+.1%})", flush=True)
        note = (f"RSS {m['rss'] / mb:,.1f} MB, peak {m['rss_peak'] / mb:,.1f}; {m['processor_orders']:,} orders:"
                f" processor {m['processor_bytes'] / mb:,.1f} MB + view {m['view_bytes'] / mb:,.1f} MB;"
                f" of the residue, the processor's kept effects ({m['effects_kept']:,})"
                f" {m['effects_bytes'] / mb:,.1f} MB"
                f" and malloc's free memory {m['rss_free'] / mb:,.1f} MB; the rest {settled(m) / mb:,.1f} MB")
        if len(runs) > 1:
            note += (f"; residue {drift:+.1%} vs the smallest run ({'within' if abs(drift) <= FLAT else 'NOT within'}"
                     f" +-10 %), the rest {settled(m) / settled(runs[0]) - 1:+.1%}")
        yield ("memory", f"RSS less order state, {events:,} events", residue(m) / mb, "MB", len(runs) == 1, note)
    if not runs:
        return
    big = runs[-1]
    if len(runs) > 1:  # what RSS grew by per order, against what the deep sizes say an order costs
        small = runs[0]
        grown = (big["rss"] - small["rss"]) / max(1, big["processor_orders"] - small["processor_orders"])
        stated = per_order(big, "processor") + per_order(big, "view")
        drifts = [residue(m) / residue(small) - 1 for m in runs[1:]]
        flat = all(abs(d) <= FLAT for d in drifts)
        print(f"    residue {'FLAT' if flat else 'NOT FLAT'} within +-10 %: "
              f"{', '.join(f'{d:+.1%}' for d in drifts)} vs {small['events']:,} events; RSS grew"
              f" {grown:,.0f} B per order, the two states say {stated:,.0f} ({grown / stated:.2f}x)", flush=True)
        cross = (f"; RSS grew {grown:,.0f} B per order between the smallest and largest run"
                 f" ({grown / stated:.2f}x the states')")
    else:
        cross = ""
    yield ("memory per order", "order-processor state per order", per_order(big, "processor"), "B", True,
           f"at {big['events']:,} events, {big['processor_orders']:,} orders, {EVENTS_PER_ORDER} events each{cross}")
    yield ("memory per order", "OrderView state per order", per_order(big, "view"), "B", False,
           f"at {big['events']:,} events, {big['view_orders']:,} orders")


# ---- poison --------------------------------------------------------------------------------------


def dead_letters(settings: Settings) -> Counter[str]:
    """The dead-letter topic's records (read_committed), counted by their ``dlt-reason``."""
    from order_system.kafka.reader import read_records

    reasons: Counter[str] = Counter()
    for message in read_records(settings, settings.dead_letter_topic, timeout=60, limit=10_000_000):
        reason = dict(message.headers() or []).get("dlt-reason", b"(none)")
        reasons[reason.decode(errors="replace")] += 1
    return reasons


def poison_rows(events: int, repeat: int, fresh: Callable[[str], Settings],
                processor_rate: Callable[[Settings, int], tuple[float, str]]) -> Iterator[Row]:
    """The processor's events/s on a clean topic (baseline) and on one with 1 % poison, both of
    ``events`` records, ``repeat`` times each, interleaved; the best of each is kept."""
    clean = list(lifecycles(events // EVENTS_PER_ORDER))
    mixed, count = with_poison(clean)
    rates: dict[str, list[float]] = {"clean": [], "poison": []}
    letters: list[Counter[str]] = []
    sink = logging.FileHandler(os.devnull)  # the warning per rejected record is written, as serve does, not shown
    logger = logging.getLogger("order_system")
    logger.addHandler(sink)
    try:
        for round_ in range(repeat):
            for name, records in (("clean", clean), ("poison", mixed)):
                settings = fresh(f"{name}-{round_}")
                load(settings, records)
                rates[name].append(processor_rate(settings, len(records))[0])
                if name == "poison":
                    letters.append(dead_letters(settings))
    finally:
        logger.removeHandler(sink)
        sink.close()
    best = f"best of {repeat}; " if repeat > 1 else ""
    yield ("poison 1 %", "order-processor, clean topic", max(rates["clean"]), "events/s", True,
           f"{best}{len(clean):,} events")
    wrong = [sum(c.values()) for c in letters if sum(c.values()) != count]
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(letters[-1].items()))
    check = (f"dead letters = poison records ({count:,}) in every run" if not wrong else
             f"BUG: {wrong} dead letters for {count:,} poison records")
    yield ("poison 1 %", "order-processor, 1 % poison records", max(rates["poison"]), "events/s", False,
           f"{best}{len(mixed):,} records, every {POISON_EVERY}th poison; {check}; reasons: {reasons}")


# ---- the hook in compare.py ----------------------------------------------------------------------


def rows(args: argparse.Namespace, sections: set[str], fresh: Callable[[str], Settings],
         processor_rate: Callable[[Settings, int], tuple[float, str]]) -> Iterator[Row]:
    """compare.py's memory and poison sections, as (section, path, value, unit, baseline, note)."""
    if "memory" in sections:
        yield from memory_rows(SIZES["smoke" if args.smoke else "quick" if args.quick else "full"], fresh)
    if "poison" in sections:
        try:
            yield from poison_rows(args.events, args.repeat, fresh, processor_rate)
        except Exception as exc:
            yield ("poison 1 %", "order-processor, 1 % poison records", float("nan"), "events/s", False,
                   f"failed: {type(exc).__name__}: {str(exc)[:300]}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))), flush=True)
    else:
        sys.exit(f"run through compare.py: benchmarks/compare.py --only memory,poison\n\n{__doc__}")
