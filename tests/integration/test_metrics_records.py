"""Prometheus metrics moved by real records through the real broker, read over HTTP."""

from __future__ import annotations

import time

from order_system.bootstrap import COUNTS
from order_system.config import Settings
from order_system.kafka.consumer import ConsumerRunner, run_groups
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.interfaces.metrics import registry_for, serve_metrics, wait_for_metrics
from order_system.interfaces.metrics import sample_value as value
from order_system.kafka.producer import OrderProducer
from order_system.local.demo import plan_lifecycles
from order_system.kafka.retry import InPlaceRetry


def test_handled_retried_dead_lettered_and_lag_follow_real_records(topic_settings: Settings, unique) -> None:
    group = unique("metrics-group")
    events = plan_lifecycles(6, seed=11)
    paid = sum(e.status is OrderStatus.PAID for e in events)
    failed_once: set[str] = set()

    def handle(event: OrderEvent, received: object) -> str:
        if event.status is OrderStatus.PAID and event.order_id not in failed_once:
            failed_once.add(event.order_id)
            raise RuntimeError("the payment service hiccupped")  # works on the second attempt
        return f"handled {event.order_id} {event.status.value}"

    with OrderProducer(topic_settings) as producer:
        futures = [producer.publish(e) for e in events]
        futures.append(producer.publish_raw(b"\xff not json {", key=b"poison-1"))  # poison on the wire
    [f.result(timeout=30) for f in futures]
    records = len(events) + 1

    url, server = serve_metrics(0, registry_for(topic_settings, [group]))
    try:
        # nobody consumes yet: the whole topic is lag, partition by partition
        # (a broker that just started may not answer for offsets yet: then lag is "unavailable")
        before = wait_for_metrics(url, lambda f: value(f, "order_system_consumer_lag_available") == 1, timeout=90)
        lag = before[(before["name"] == "order_system_consumer_lag") & (before.get("group") == group)]
        assert sorted(lag["partition"]) == [str(p) for p in range(topic_settings.partitions)]
        assert lag["value"].sum() == records
        assert value(before, "order_system_records_handled_total", group=group) == 0

        runner = ConsumerRunner(topic_settings, group, {s: handle for s in OrderStatus},
                                failure_policy=InPlaceRetry(attempts=3, backoff=0.05), hooks=COUNTS)
        with run_groups(runner):
            after = wait_for_metrics(url, lambda f: (
                value(f, "order_system_records_handled_total", group=group) == len(events)
                and value(f, "order_system_records_dead_lettered_total", group=group) == 1
                and value(f, "order_system_consumer_lag", group=group) == 0), timeout=90)
        assert value(after, "order_system_records_retried_total", group=group) == paid > 0
        assert runner.dead_lettered == 1 and len(failed_once) == paid
    finally:
        server.shutdown()



def test_a_broker_that_does_not_answer_leaves_lag_out_and_the_scrape_bounded(free_port: int) -> None:
    from prometheus_client import generate_latest

    from order_system.interfaces.metrics import parse_metrics

    nowhere = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port}"})  # nothing listens there
    registry = registry_for(nowhere, ["order-processor"])
    began = time.monotonic()
    frame = parse_metrics(generate_latest(registry).decode())
    assert time.monotonic() - began < 15
    assert value(frame, "order_system_consumer_lag_available") == 0
    assert "order_system_consumer_lag" not in set(frame["name"])
    counters = set(zip(frame["name"], frame["group"]))  # the counters are still shown
    assert ("order_system_records_handled_total", "order-processor") in counters


def test_serve_sums_the_counts_of_its_children_and_of_the_ones_before_them(topic_settings: Settings,
                                                                          tmp_path) -> None:
    """serve's children count in prometheus_client's multiprocess files (one per process) in a
    directory serve gives them; its /metrics sums them per group. Two real processes stand for a
    child and the one started after it died."""
    import os
    import subprocess
    import sys

    from prometheus_client import generate_latest

    from order_system.interfaces.metrics import parse_metrics

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for handled in (3, 2):
        script = (f"from order_system.bootstrap import COUNTS\nCOUNTS.handled('order-processor', {handled})\n"
                  "COUNTS.dead_lettered('analytics-service')\n")
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    groups = ("order-processor", "notification-service", "analytics-service")
    text = generate_latest(registry_for(topic_settings, groups, counted_in=tmp_path)).decode()
    assert text.count("# TYPE order_system_records_handled_total counter") == 1, text  # one family, not two
    frame = parse_metrics(text)
    assert value(frame, "order_system_records_handled_total", group="order-processor") == 5
    assert value(frame, "order_system_records_handled_total", group="notification-service") == 0  # shown from 0
    assert value(frame, "order_system_records_dead_lettered_total", group="analytics-service") == 2
    assert value(frame, "order_system_records_retried_total", group="order-processor") == 0
