"""The tutorial's @RetryableTopic(attempts = "3"): a failing record goes to -retry-0, -retry-1, then -dlt."""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from order_system.domain.events import OrderEvent, OrderStatus, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SUFFIX = uuid.uuid4().hex[:8]
TOPIC, GROUP = f"example-retry-{SUFFIX}", f"order-processor-{SUFFIX}"
RETRY_0, RETRY_1, DLT = f"{TOPIC}-retry-0", f"{TOPIC}-retry-1", f"{TOPIC}-dlt"  # the topics Spring creates
NEXT = {TOPIC: RETRY_0, RETRY_0: RETRY_1, RETRY_1: DLT}  # where a record goes when its attempt failed
DELAY = {RETRY_0: 0.5, RETRY_1: 1.0}  # seconds before the next attempt (Spring: @BackOff(delay = ...))

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
for future in admin.create_topics([NewTopic(t, 3, min(3, brokers)) for t in (TOPIC, *NEXT.values())]).values():
    future.result(timeout=15)


def handle(event: OrderEvent) -> None:  # the listener method: the payment service is down
    if event.status is OrderStatus.PAID:
        raise RuntimeError("payment gateway timed out")
    print(f"handled {event.status.value} of order {event.order_id}")


order = new_order_id()
config = {"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
          "enable.auto.offset.store": False}
try:
    with Producer({"bootstrap.servers": BOOTSTRAP}) as producer, Consumer(config) as consumer:
        for event in (OrderEvent.created(order, "customer-123"), OrderEvent.paid(order, "customer-123", 2)):
            producer.produce(TOPIC, key=event.key(), value=event.to_json(), headers=event.headers())
        consumer.subscribe([TOPIC, RETRY_0, RETRY_1, DLT])  # Spring runs one listener container per topic
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the dead letter came, or 20 s
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}")
                continue
            if msg.topic() == DLT:  # Spring's @DltHandler method: print the dead letter with its headers
                print(f"dead letter at {DLT} partition={msg.partition()} offset={msg.offset()}:")
                print("\n".join(f"  {name}: {value.decode()}" for name, value in msg.headers()))
                break
            time.sleep(DELAY.get(msg.topic(), 0.0))  # the back-off (Spring pauses the partition until it is due)
            headers = dict(msg.headers() or [])
            attempt = int(headers.get("retry_topic-attempts", b"1"))
            try:
                handle(OrderEvent.from_json(msg.value()))
            except Exception as exc:  # noqa: BLE001 -- as in Spring, any failure of the listener is retried
                target = NEXT[msg.topic()]  # Spring's header names below (text here; Spring: binary ints)
                headers.setdefault("kafka_dlt-original-topic", msg.topic())  # kept from the first failure
                headers.setdefault("kafka_dlt-original-partition", str(msg.partition()))
                headers.setdefault("kafka_dlt-original-offset", str(msg.offset()))
                headers["kafka_dlt-exception-fqcn"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
                headers["kafka_dlt-exception-message"] = str(exc)
                headers["retry_topic-attempts"] = str(attempt if target == DLT else attempt + 1)  # the next try's
                producer.produce(target, key=msg.key(), value=msg.value(), headers=headers)
                producer.flush(10)  # the copy is acknowledged before the original's offset is stored
                print(f"attempt {attempt} failed at {msg.topic()} partition={msg.partition()} "
                      f"offset={msg.offset()}: {exc} -> {target}")
            consumer.store_offsets(msg)  # handled, or handed on to the next topic
finally:
    for future in admin.delete_topics([TOPIC, *NEXT.values()]).values():
        future.result(timeout=15)
    admin.delete_consumer_groups([GROUP])[GROUP].result(timeout=15)
