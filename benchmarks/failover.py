"""Failover time of the local three-node cluster: Kafka's default broker session vs the tuned one.

For each setting the cluster is (re)started, a producer with acks=all and idempotence publishes to
partition 0 of a fresh RF 3 / min ISR 2 topic every 10 ms, the node leading partition 0 is
SIGKILLed, and the script measures (a) the time until the metadata names a new leader and (b) the
longest wait for an acknowledgement on partition 0 across the kill. The node is then restarted and
the ISR waited on. It prints both settings side by side and their ratio (same machine, same run).

    .venv/bin/python benchmarks/failover.py --runs 2     # ORDER_SYSTEM_CLUSTER_PORT picks the ports
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Producer

from order_system.local.cluster import (FAILOVER_TUNING, LocalCluster, cluster_port, leader_of, wait_for,
                                        wait_for_new_leader, wait_isr_whole)
from order_system.config import Settings
from order_system.kafka.topics import create_topics, delete_topics


def one_failover(cluster: LocalCluster) -> tuple[float, float]:
    settings = cluster.settings().with_topic(f"failover-bench-{uuid.uuid4().hex[:6]}")
    create_topics(settings)
    producer = Producer(settings.producer_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 0,
                                                   "delivery.timeout.ms": 60_000}))
    acked: list[float] = []
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            producer.produce(settings.topic, b"x", partition=0,
                             on_delivery=lambda err, _m: err is None and acked.append(time.monotonic()))
            producer.poll(0.01)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) > 20, 30, "first acknowledgements")
    leader = leader_of(settings, 0)
    assert leader is not None
    killed_at = time.monotonic()
    cluster.kill_node(leader)
    wait_for_new_leader(settings, 0, leader)
    leader_s = time.monotonic() - killed_at
    wait_for(lambda: any(t > killed_at + leader_s for t in acked), 60, "an acknowledgement from the new leader")
    stop.set()
    thread.join()
    producer.flush(60)
    times = [killed_at] + [t for t in acked if t > killed_at]
    gap_s = max(b - a for a, b in zip(times, times[1:]))
    cluster.start_node(leader)
    wait_isr_whole(settings)
    delete_topics(settings, list(settings.all_topics))
    return leader_s, gap_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    port = cluster_port(Settings.from_env())
    results: dict[str, list[tuple[float, float]]] = {}
    for name, tuned in (("Kafka defaults", False), ("tuned " + str(FAILOVER_TUNING), True)):
        cluster = LocalCluster(port=port, tuned=tuned)
        cluster.stop()
        cluster.start()
        results[name] = [one_failover(cluster) for _ in range(args.runs)]
        cluster.stop()
    print(f"{'setting':<90} {'new leader (s)':>15} {'longest ack wait (s)':>21}")
    medians = {}
    for name, runs in results.items():
        medians[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{name:<90} {medians[name][0]:>15.1f} {medians[name][1]:>21.1f}   runs: {runs}")
    (d_leader, d_gap), (t_leader, t_gap) = medians.values()
    print(f"tuned / default: new leader {t_leader / d_leader:.2f}x, longest acknowledgement wait {t_gap / d_gap:.2f}x")


if __name__ == "__main__":
    main()
