"""The tutorial's extension pattern: three consumer groups read one topic, each every event; a fourth joins later."""

import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from order_system.domain.events import OrderEvent, OrderStatus, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SUFFIX = uuid.uuid4().hex[:8]
TOPIC = f"example-three-groups-{SUFFIX}"
GROUPS = ["order-processor", "notification-service", "analytics-service"]

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
admin.create_topics([NewTopic(TOPIC, 3, min(3, brokers))])[TOPIC].result(timeout=15)

S, shipped, cancelled = OrderStatus, new_order_id(), new_order_id()
EVENTS = [OrderEvent.for_status(s, shipped, "customer-123", v) for v, s in enumerate([S.CREATED, S.PAID, S.SHIPPED], 1)]
EVENTS += [OrderEvent.created(cancelled, "customer-456"), OrderEvent.cancelled(cancelled, "customer-456", 2)]
with Producer({"bootstrap.servers": BOOTSTRAP}) as producer:
    for event in EVENTS:
        producer.produce(TOPIC, key=event.key(), value=event.to_json(), headers=event.headers())


def summary(events: list[OrderEvent]) -> str:
    """Each order's statuses in the order they were read, e.g. 'k3f9a2xq CREATED>PAID'."""
    statuses: dict[str, list[str]] = {}
    for event in events:
        statuses.setdefault(event.order_id, []).append(event.status.value)
    return ", ".join(f"{order} {'>'.join(steps)}" for order, steps in sorted(statuses.items()))


def listen(group: str) -> list[OrderEvent]:
    """One @KafkaListener(topics = TOPIC, groupId = group): reads until it saw every event (or 15 s)."""
    config = {"bootstrap.servers": BOOTSTRAP, "group.id": f"{group}-{SUFFIX}", "auto.offset.reset": "earliest"}
    seen, deadline = [], time.monotonic() + 15
    with Consumer(config) as consumer:  # close() commits the group's offsets (auto-commit is on)
        consumer.subscribe([TOPIC])
        while len(seen) < len(EVENTS) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():  # an error event, not a record
                print(f"[{group}] consumer error: {msg.error()}")
            elif msg is not None:
                seen.append(OrderEvent.from_json(msg.value()))
    return seen


def committed(group: str) -> dict[int, int]:
    """Where a group resumes on each partition it committed on; asking does not join the group."""
    with Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"{group}-{SUFFIX}"}) as consumer:
        offsets = consumer.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}


try:
    print(f"produced {len(EVENTS)} events: {summary(EVENTS)}")
    with ThreadPoolExecutor() as pool:  # three services side by side, each in its own group
        for group, seen in zip(GROUPS, pool.map(listen, GROUPS)):
            print(f"[{group}] saw {len(seen)} of {len(EVENTS)} events: {summary(seen)}")
    before = {group: committed(group) for group in GROUPS}
    seen = listen("recommendation-service")  # a new feature is a new group: nothing else changes
    print(f"[recommendation-service] saw {len(seen)} of {len(EVENTS)} events: {summary(seen)}")
    for group in GROUPS:
        print(f"[{group}] committed offsets before {before[group]}, after {committed(group)}")
finally:
    admin.delete_topics([TOPIC])[TOPIC].result(timeout=15)
    names = [f"{group}-{SUFFIX}" for group in [*GROUPS, "recommendation-service"]]
    for future in admin.delete_consumer_groups(names).values():
        future.result(timeout=15)
