"""Issue 13's table: order_system beside the raw clients and Kafka's own tools, in one run.

    .venv/bin/python benchmarks/compare.py            # full: 100,000 events, 30 s of HTTP load, 60 s latency runs
    .venv/bin/python benchmarks/compare.py --quick    # a few seconds per row
    .venv/bin/python benchmarks/compare.py --events 50000 --http-seconds 10 --only produce,consume

Every row runs against the one broker of ``KAFKA_BOOTSTRAP_SERVERS`` (started by
``order-system broker start``), on topics of its own with 3 partitions, one after the other,
and is compared with the baseline of its section measured in the same run. It prints the
table and writes ``compare.csv`` and ``compare.png`` into ``--out`` (default
``benchmarks/results``). Needs: Java and Maven (Kafka's ProducerPerformance and
EndToEndLatency, fetched once from Maven Central at the broker's version), ``wrk``
(``scripts/setup-wrk``), and kafka-python (installed into this Python on first use, as a peer
to compare with; order_system does not use it). A benchmark reports; it never fails on a figure.

Sections in modules of their own: ``processor_modes.py`` (exactly once vs at least once),
``command_latency.py`` with ``cpu.py`` (commands at each rate, CPU per process), ``latency.py``
(publish to processed, and to an ``OrderView`` with the processor in another process),
``memory.py`` (memory and poison); ``report.py`` holds the rows and prints and draws them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import Consumer, Producer

from order_system import OrderProducer, Settings, create_topics, delete_topics, plan_lifecycles
from order_system.config import default_home
from order_system.domain.events import OrderEvent
from order_system.domain.errors import BrokerError, ConfigError
from order_system.kafka.reachability import require_kafka
from order_system.local.broker import KAFKA_VERSION
from order_system.local.maven import fetch_jars
from report import Row, load_average, machine, print_table, redraw, with_ratios, write_chart, write_csv

ROOT = Path(__file__).resolve().parents[1]
PRODUCER_SETTINGS = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
CONNECTIONS, THREADS = 32, 2  # wrk's load, the same for every HTTP row
SECTIONS = ("produce", "consume", "modes", "http", "commands", "latency", "memory", "poison")  # --only's names


# ---- producing -----------------------------------------------------------------------------------


def records_of(events: list[OrderEvent]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(e.key(), e.to_json(), e.headers()) for e in events]


def ready_producer(settings: Settings) -> Producer:
    """A raw producer that has its idempotent producer id already (not part of the timing)."""
    producer = Producer(settings.producer_config(**PRODUCER_SETTINGS))
    producer.produce(settings.topic, b"warm-up", b"warm-up")
    assert producer.flush(60) == 0, "the warm-up record was not acknowledged"
    return producer


def start_clock() -> float:
    gc.collect()  # no collector debt left by the set-up (or an earlier row) is paid inside a row
    return time.perf_counter()


def raw_produce(settings: Settings, events: list[OrderEvent]) -> float:
    """confluent-kafka's produce() loop with the same keys, values and headers, pre-encoded."""
    records = records_of(events)
    producer = ready_producer(settings)
    began = start_clock()
    for key, value, headers in records:
        while True:
            try:
                producer.produce(settings.topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "raw producer: records left undelivered"
    return len(records) / (time.perf_counter() - began)


def encode_and_produce(settings: Settings, events: list[OrderEvent]) -> float:
    """The floor of any publish(event) that reports each delivery: the raw loop, encoding each
    event (value and headers) and giving produce() a callback that does nothing."""
    producer = ready_producer(settings)
    delivered = lambda error, message: None  # noqa: E731
    began = start_clock()
    for event in events:
        while True:
            try:
                producer.produce(settings.topic, event.to_json(), event.key(), headers=event.headers(),
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "raw producer: records left undelivered"
    return len(events) / (time.perf_counter() - began)


def order_producer(settings: Settings, events: list[OrderEvent]) -> float:
    """OrderProducer.publish for each event, then flush (which waits for every acknowledgement)."""
    with OrderProducer(settings) as producer:
        producer.publish(OrderEvent.created(uuid.uuid4().hex[:8], "warm-up")).result(60)
        began = start_clock()
        futures = [producer.publish(event) for event in events]
        assert producer.flush(120) == 0, "OrderProducer: records left undelivered"
        took = time.perf_counter() - began
    assert all(f.exception(0) is None for f in futures), "OrderProducer: a publish failed"
    return len(events) / took


def kafka_python_produce(settings: Settings, events: list[OrderEvent]) -> float:
    KafkaProducer = kafka_python().KafkaProducer  # noqa: N806
    records = records_of(events)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
                             enable_idempotence=True)
    producer.send(settings.topic, key=b"warm-up", value=b"warm-up").get(60)
    began = start_clock()
    for key, value, headers in records:
        producer.send(settings.topic, key=key, value=value, headers=headers)
    producer.flush(120)
    took = time.perf_counter() - began
    producer.close()
    return len(records) / took


def producer_performance(settings: Settings, count: int, size: int) -> float:
    """Kafka's own ProducerPerformance (Java) with the same producer settings."""
    props = [f"bootstrap.servers={settings.bootstrap_servers}", "acks=all", "enable.idempotence=true", "linger.ms=5"]
    out = java_tool("org.apache.kafka.tools.ProducerPerformance", "--topic", settings.topic, "--num-records",
                    str(count), "--record-size", str(size), "--throughput", "-1", "--producer-props", *props)
    return float(re.findall(r"([\d.]+) records/sec", out)[-1])


# ---- consuming -----------------------------------------------------------------------------------


def consumer_config(settings: Settings, **extra: object) -> dict[str, object]:
    return settings.client_config(**{"group.id": f"bench-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
                                     "enable.auto.offset.store": False, **extra})


def raw_consume_batch(settings: Settings, count: int) -> float:
    consumer = Consumer(consumer_config(settings))
    consumer.subscribe([settings.topic])
    seen, began = 0, None
    while seen < count:
        messages = consumer.consume(num_messages=500, timeout=1.0)
        began = began or (time.perf_counter() if messages else None)
        for message in messages:
            if message.error() is None:
                consumer.store_offsets(message=message)
                seen += 1
    took = time.perf_counter() - (began or time.perf_counter())
    consumer.close()
    return count / took


def raw_consume_poll(settings: Settings, count: int) -> float:
    consumer = Consumer(consumer_config(settings))
    consumer.subscribe([settings.topic])
    seen, began = 0, None
    while seen < count:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            began = began or time.perf_counter()
            consumer.store_offsets(message=message)
            seen += 1
    took = time.perf_counter() - (began or time.perf_counter())
    consumer.close()
    return count / took


def kafka_python_consume(settings: Settings, count: int) -> float:
    consumer = kafka_python().KafkaConsumer(settings.topic, bootstrap_servers=settings.bootstrap_servers,
                                            group_id=f"bench-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest")
    seen, began = 0, None
    while seen < count:
        batches = consumer.poll(timeout_ms=1000, max_records=500)
        if batches:
            began = began or time.perf_counter()
        seen += sum(len(records) for records in batches.values())
    took = time.perf_counter() - (began or time.perf_counter())
    consumer.close()
    return count / took


def order_processor(settings: Settings, count: int) -> tuple[float, str]:
    """What ``serve`` runs for the order-processor group: ``runner_for(processor, settings)``."""
    runner, processor = processor_runner(settings)
    began = None
    with runner:
        deadline = time.monotonic() + max(120.0, count / 200)
        while runner.processed + runner.skipped < count and time.monotonic() < deadline:
            runner.wait_until(lambda: runner.processed + runner.skipped >= count, timeout=0.05)
            if began is None and runner.processed:
                began = time.perf_counter()
        took = time.perf_counter() - (began or time.perf_counter())
        done = runner.processed + runner.skipped
    return done / took, f"{type(runner).__name__}, {type(processor).__name__}; {done} of {count} records"


def processor_runner(settings: Settings):  # type: ignore[no-untyped-def]
    import inspect

    from order_system.bootstrap import runner_for, standard_groups

    processor = standard_groups()[0]
    if "instance_id" in inspect.signature(type(processor)).parameters:  # the transactional processor
        processor = type(processor)(instance_id=f"bench-{uuid.uuid4().hex[:8]}")
    return runner_for(processor, settings), processor


# ---- end-to-end latency --------------------------------------------------------------------------


def end_to_end_latency(settings: Settings, count: int, size: int) -> tuple[float, float]:
    """Kafka's EndToEndLatency: one record at a time, produced and consumed; (p50, p99) in ms."""
    out = java_tool("org.apache.kafka.tools.EndToEndLatency", settings.bootstrap_servers, settings.topic,
                    str(count), "all", str(size))
    p50, p99 = re.search(r"50th = ([\d.]+), 99th = ([\d.]+)", out).groups()  # type: ignore[union-attr]
    return float(p50), float(p99)


# ---- HTTP ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # the server is another process: nothing to wait on but its port
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s\n{log.read_text()[-2000:]}")


def wrk(url: str, seconds: float, script: str) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    done = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{max(1, round(seconds))}s",
                           "--latency", "-s", lua.name, url], capture_output=True, text=True, timeout=seconds + 60)
    os.unlink(lua.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    p99 = re.search(r"99%\s+(\S+)", done.stdout)
    note = f"p99 {p99.group(1) if p99 else '?'}"
    if errors:
        note += f"; {errors.group(1)} non-2xx answers"
    return rate, note


POST_SCRIPT = """wrk.method = "POST"
wrk.body = '{"customerId": "customer-1"}'
wrk.headers["Content-Type"] = "application/json"
"""


def get_script(ids: list[str]) -> str:
    listed = ", ".join(f'"{i}"' for i in ids)
    return f"""ids = {{{listed}}}
request = function()
  return wrk.format("GET", "/api/orders/" .. ids[math.random(#ids)])
end
"""


class Server:
    """A server process on a free port, stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen([*args, str(self.port)], env=env, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/health", self.process, log)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def http_rows(settings: Settings, seconds: float, work: Path) -> list[Row]:
    import httpx

    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: run scripts/setup-wrk")
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": settings.topic, "ORDER_SYSTEM_HOME": str(work / "home")}
    trivial = Server([sys.executable, str(ROOT / "benchmarks" / "trivial_app.py")], env, work / "trivial.log")
    try:
        ids = [uuid.uuid4().hex[:8] for _ in range(100)]
        post, post_note = wrk(trivial.url + "/api/orders", seconds, POST_SCRIPT)
        get, get_note = wrk(trivial.url, seconds, get_script(ids))
    finally:
        trivial.stop()
    serve = Server([sys.executable, "-m", "order_system", "serve", "--port"], env, work / "serve.log")
    try:
        created = [httpx.post(serve.url + "/api/orders", json={"customerId": "customer-1"},
                              timeout=30).json()["orderId"]
                   for _ in range(100)]
        deadline = time.monotonic() + 60
        while httpx.get(f"{serve.url}/api/orders/{created[-1]}", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "serve never showed the orders it accepted"
            time.sleep(0.1)  # the processor is in the other process
        ours_post, ours_post_note = wrk(serve.url + "/api/orders", seconds, POST_SCRIPT)
        ours_get, ours_get_note = wrk(serve.url, seconds, get_script(created))
        log_lines = len(serve.log.read_text(errors="replace").splitlines())
    finally:
        serve.stop()
    return [Row("POST /api/orders", "trivial FastAPI endpoint, same body, same uvicorn", post, "req/s", True,
                post_note),
            Row("POST /api/orders", "order-system serve (three groups running)", ours_post, "req/s", False,
                ours_post_note + f"; serve logged {log_lines} lines"),
            Row("GET /api/orders/{id}", "trivial FastAPI endpoint, same uvicorn", get, "req/s", True, get_note),
            Row("GET /api/orders/{id}", "order-system serve (three groups running)", ours_get, "req/s", False,
                ours_get_note)]


# ---- tools ---------------------------------------------------------------------------------------


def kafka_tools_libs() -> Path:
    """Kafka's tools jars (kafka-tools at the broker's version), fetched once like the broker's."""
    return fetch_jars(default_home() / f"kafka-tools-{KAFKA_VERSION}",
                      [("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
                       ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.4")],
                      what=f"Kafka {KAFKA_VERSION} tools", say=lambda line: print(line, flush=True))


def java_tool(main: str, *args: str) -> str:
    libs = kafka_tools_libs()
    done = subprocess.run(["java", "-Xmx512m", "-cp", f"{libs}/*", main, *args], capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{main} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


def kafka_python():  # type: ignore[no-untyped-def]
    """kafka-python, the peer compared with; installed into this Python on first use."""
    try:
        import kafka
    except ImportError:
        print("installing kafka-python (a peer to compare with) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "kafka-python"], check=True)
        import kafka
    return kafka


# ---- the run -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> list[Row]:
    base = Settings.from_env()
    run = uuid.uuid4().hex[:6]
    topics: list[Settings] = []

    def fresh(name: str) -> Settings:
        settings = base.with_topic(f"bench-{run}-{name}")
        create_topics(settings)
        topics.append(settings)
        return settings

    events = plan_lifecycles(args.events // 4, seed=1, cancel_every=0)
    size = round(statistics.mean(len(e.to_json()) for e in events[:1000]))
    sections = set(args.only.split(",")) if args.only else set(SECTIONS)
    rows: list[Row] = []
    began = [load_average()]  # the 1-minute load average when the next row's measurement began

    def add(row: Row) -> None:
        row.load_start = began[0] if row.load_start is None else row.load_start
        row.load_end = began[0] = load_average()
        rows.append(row)
        print(f"  {row.section:<22} {row.path:<55} {row.value:>12,.1f} {row.unit}  {row.note}"
              f" (load {row.load})", flush=True)

    def group(section: str, unit: str, make: Callable[[], Iterable[Row]]) -> None:
        """Rows measured together: each keeps the load average of when the group began."""
        start = began[0] = load_average()
        try:
            for row in make():
                row.load_start = start
                add(row)
        except Exception as exc:
            add(Row(section, f"{section} rows", float("nan"), unit, False,
                    f"failed: {type(exc).__name__}: {str(exc)[:300]}"))

    def attempt(section: str, path: str, unit: str, action: Callable[[], object], baseline: bool = False) -> None:
        began[0] = load_average()
        try:
            result = action()
        except Exception as exc:  # a row that cannot run is reported, not hidden
            add(Row(section, path, float("nan"), unit, baseline, f"failed: {type(exc).__name__}: {str(exc)[:300]}"))
            return
        value, note = result if isinstance(result, tuple) else (result, "")
        add(Row(section, path, float(value), unit, baseline, str(note)))

    work = Path(tempfile.mkdtemp(prefix="order-bench-"))
    try:
        produced = None
        if sections & {"produce", "consume"}:
            n = len(events)
            produced = fresh("ours")  # the consume rows read what OrderProducer wrote
            # the short rows run --repeat times, interleaved, and keep their best figure: a busy
            # machine only ever slows a run down
            best: dict[str, list[float]] = {}
            for round_ in range(args.repeat if "produce" in sections else 1):
                for name, row in (("raw", raw_produce), ("floor", encode_and_produce), ("ours", order_producer)):
                    if name != "ours" and "produce" not in sections:
                        continue
                    target = produced if name == "ours" and round_ == 0 else fresh(f"{name}-{round_}")
                    # events not yet encoded (an event caches its JSON): each row encodes them once
                    batch = events if name == "raw" else plan_lifecycles(args.events // 4, seed=1, cancel_every=0)
                    try:
                        best.setdefault(name, []).append(row(target, batch))
                    except Exception as exc:
                        print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
            rounds = f"best of {args.repeat}" if args.repeat > 1 else ""

            def figure(name: str, note: str = "") -> Callable[[], object]:
                if not best.get(name):
                    raise RuntimeError("every run failed (see above)")
                return lambda: (max(best[name]), "; ".join(x for x in (rounds, note) if x))

            if "produce" in sections:
                attempt("produce", "raw confluent-kafka produce() loop", "events/s",
                        lambda: figure("raw", "values and headers encoded beforehand")(), baseline=True)
                attempt("produce", "raw loop encoding each event, no-op callback", "events/s",
                        lambda: figure("floor", "the floor of a publish(event) with a result per record")())
                s2 = fresh("java")
                attempt("produce", "Kafka ProducerPerformance (Java)", "events/s",
                        lambda: (producer_performance(s2, n, size), f"{size}-byte records"))
                s3 = fresh("kpy")
                attempt("produce", "kafka-python producer", "events/s", lambda: kafka_python_produce(s3, events))
            attempt("produce", "OrderProducer.publish", "events/s", lambda: figure("ours")())
        if "consume" in sections and produced is not None:
            n = len(events)
            attempt("consume", "raw consume(500) + store_offsets", "events/s",
                    lambda: raw_consume_batch(produced, n), baseline=True)
            attempt("consume", "raw poll() + store_offsets", "events/s", lambda: raw_consume_poll(produced, n))
            attempt("consume", "kafka-python poll(max_records=500)", "events/s",
                    lambda: kafka_python_consume(produced, n))
            attempt("consume", "order-processor (runner_for, as serve runs it)", "events/s",
                    lambda: order_processor(produced, n))
        if "modes" in sections:
            import memory
            import processor_modes  # the order-processor exactly once and at least once, beside raw consume(500)

            records = list(memory.lifecycles(args.events // 4))
            group(processor_modes.SECTION, "events/s", lambda: processor_modes.rows(
                args.events, fresh, lambda s: memory.load(s, records), raw_consume_batch, order_processor,
                rounds=1 if args.smoke else processor_modes.ROUNDS))
        if "http" in sections:
            group("POST /api/orders", "req/s", lambda: http_rows(fresh("http"), args.http_seconds, work))
        if "commands" in sections:
            from command_latency import SECTION, command_rows  # its own module; it imports Server

            for rate in args.command_rate:  # with serve's CPU per process at each rate (cpu.py)
                group(f"{SECTION} at {rate}/s", "ms",
                      lambda rate=rate: command_rows(fresh(f"commands-{rate}"), rate, args.command_seconds, work))
        if "latency" in sections:
            import latency  # publish -> processed here, and -> an OrderView with the processor in another process

            s = fresh("e2e-java")
            count = max(200, int(min(args.latency_seconds, 60) * 100))
            java_p99: list[float] = []

            def java_latency() -> tuple[float, str]:
                p50, p99 = end_to_end_latency(s, count, size)
                java_p99.append(p99)
                return p99, f"p50 {p50:.1f} ms; {count} records, one at a time"

            attempt("latency p99", "Kafka EndToEndLatency (Java), unloaded", "ms", java_latency, baseline=True)
            for rate in args.rates:
                s_rate = fresh(f"e2e-{rate}")

                def ours(rate: int = rate, s_rate: Settings = s_rate) -> tuple[float, str]:
                    p50, p99, note = latency.publish_to_processed(s_rate, rate, args.latency_seconds)
                    return p99, f"p50 {p50:.1f} ms; {note}"

                attempt("latency p99", f"publish -> processed at {rate:,}/s", "ms", ours)
            for rate in args.rates:  # the processor in another process, its state read by an OrderView here
                s_rate = fresh(f"view-{rate}")

                def viewed(rate: int = rate, s_rate: Settings = s_rate) -> tuple[float, str]:
                    p50, p99, note = latency.publish_to_view(s_rate, rate, args.latency_seconds, work)
                    return p99, f"p50 {p50:.1f} ms; {note}"

                attempt("latency p99", f"publish -> OrderView (processor in its own process) at {rate:,}/s", "ms",
                        viewed)
        if sections & {"memory", "poison"}:
            import memory  # benchmarks/memory.py: RSS and state per order from 10k to 1M events; 1 % poison

            for row in memory.rows(args, sections, fresh, order_processor):
                add(Row(*row))
    finally:
        for settings in topics:
            try:
                delete_topics(settings, list(settings.all_topics))
            except Exception as exc:  # leave the run's result; say what is left behind
                print(f"could not delete {settings.topic}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return with_ratios(rows)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds per row: 20,000 events, 5 s runs")
    parser.add_argument("--smoke", action="store_true", help="the smallest run (the test suite's check)")
    parser.add_argument("--events", type=int, help="events produced and consumed per row (default 100,000)")
    parser.add_argument("--http-seconds", type=float, help="wrk's duration per HTTP row (default 30)")
    parser.add_argument("--command-seconds", type=float, help="duration of the command rows (default 30)")
    parser.add_argument("--command-rate", help="commands per second of the command rows, comma-separated, each "
                        "rate in turn (default 500,1000)")
    parser.add_argument("--latency-seconds", type=float, help="sustained load per latency row (default 60)")
    parser.add_argument("--rates", help="publish rates of the latency rows, comma-separated (default 1000,10000)")
    parser.add_argument("--repeat", type=int, help="runs of the short produce rows, best kept (default 3; quick 1)")
    parser.add_argument("--only",
                        help=f"sections to run: {','.join(SECTIONS)} (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where CSV and PNG go")
    parser.add_argument("--from-csv", type=Path, help="print and redraw an earlier run's CSV instead of measuring")
    args = parser.parse_args(argv)
    if args.from_csv:
        return redraw(args.from_csv, args.out)
    # events, HTTP seconds, latency seconds, latency rates, command seconds, command rate
    preset = ((2_000, 1.0, 1.0, "200", 1.0, "200") if args.smoke
              else (20_000, 5.0, 5.0, "1000,10000", 5.0, "500,1000") if args.quick
              else (100_000, 30.0, 60.0, "1000,10000", 30.0, "500,1000"))
    args.events = args.events or preset[0]
    args.http_seconds = args.http_seconds or preset[1]
    args.latency_seconds = args.latency_seconds or preset[2]
    args.rates = [int(r) for r in (args.rates or preset[3]).split(",")]
    args.command_seconds = args.command_seconds or preset[4]
    args.command_rate = [int(r) for r in (args.command_rate or preset[5]).split(",")]
    args.repeat = args.repeat or (1 if args.smoke or args.quick else 3)
    try:  # at once, in one line: not a traceback after librdkafka's 30 s of trying
        require_kafka(Settings.from_env())
    except (BrokerError, ConfigError) as exc:
        print(f"benchmarks/compare.py: {exc}", file=sys.stderr)
        return 2
    command = "benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{command.strip()}: {args.events:,} events, 3 partitions, broker {Settings.from_env().bootstrap_servers}; "
          f"load average (1 min) {load_average():.2f} at the start", flush=True)
    rows = measure(args)
    title = f"{command.strip()} | {stamp} | {machine()} | load average (1 min) {load_average():.2f} at the end"
    print_table(rows, title)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "compare.csv", stamp, command.strip())
    write_chart(rows, args.out / "compare.png", title)
    print(f"\nwrote {args.out / 'compare.csv'} and {args.out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
