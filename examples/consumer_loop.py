"""The tutorial's @KafkaListener(topics = "order-events", groupId = "order-processor") as a poll loop."""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from order_system.domain.events import OrderEvent, OrderStatus, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SUFFIX = uuid.uuid4().hex[:8]
TOPIC, GROUP = f"example-consumer-loop-{SUFFIX}", f"order-processor-{SUFFIX}"  # unique: a demo joins no real group

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
admin.create_topics([NewTopic(TOPIC, 3, min(3, brokers))])[TOPIC].result(timeout=15)

# Something to read: one order delivered, one cancelled (what keyed_producer.py shows in detail)
S, delivered, cancelled = OrderStatus, new_order_id(), new_order_id()
EVENTS = [OrderEvent.for_status(s, delivered, "customer-123", v) for v, s in
          enumerate([S.CREATED, S.PAID, S.SHIPPED, S.DELIVERED], 1)]
EVENTS += [OrderEvent.created(cancelled, "customer-456"), OrderEvent.cancelled(cancelled, "customer-456", 2)]
with Producer({"bootstrap.servers": BOOTSTRAP}) as producer:
    for event in EVENTS:
        producer.produce(TOPIC, key=event.key(), value=event.to_json(), headers=event.headers())


def handle(event: OrderEvent) -> None:
    match event.status:  # the tutorial's switch (event.status()) { case CREATED -> ... }
        case OrderStatus.CREATED: print(f"  [CREATED] {event.order_id}: check inventory, await payment")
        case OrderStatus.PAID: print(f"  [PAID] {event.order_id}: prepare shipping")
        case OrderStatus.SHIPPED: print(f"  [SHIPPED] {event.order_id}: track the delivery")
        case OrderStatus.DELIVERED: print(f"  [DELIVERED] {event.order_id}: complete the order")
        case OrderStatus.CANCELLED: print(f"  [CANCELLED] {event.order_id}: restock, refund")


config = {
    "bootstrap.servers": BOOTSTRAP,
    "group.id": GROUP,  # groupId = "order-processor"
    "auto.offset.reset": "earliest",  # a new group starts at the first record (Spring: auto-offset-reset)
    "enable.auto.offset.store": False,  # we store an offset ourselves, once its record is handled
}
handled, deadline = 0, time.monotonic() + 15  # bounded: N records or T seconds, whichever comes first
try:
    with Consumer(config) as consumer:  # leaving the block closes it: commits stored offsets, leaves the group
        consumer.subscribe([TOPIC])
        while handled < len(EVENTS) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():  # an error event (e.g. a broker went away), not a record
                print(f"consumer error: {msg.error()}")
                continue
            print(f"received partition={msg.partition()} offset={msg.offset()} key={msg.key().decode()}")
            handle(OrderEvent.from_json(msg.value()))
            consumer.store_offsets(msg)  # only now (Spring too commits after the listener returned): at-least-once
            handled += 1
        if handled:  # auto-commit sends the stored offsets every 5 s; commit them now too, and look
            consumer.commit(asynchronous=False)
        committed = consumer.committed(consumer.assignment(), timeout=10)  # offset -1001: none committed
        print("committed offsets:", {tp.partition: tp.offset for tp in committed if tp.offset >= 0})
    print(f"handled {handled} of {len(EVENTS)} records")
finally:
    admin.delete_topics([TOPIC])[TOPIC].result(timeout=15)
    admin.delete_consumer_groups([GROUP])[GROUP].result(timeout=15)
