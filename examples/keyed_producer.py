"""The tutorial's OrderProducer: publish an order's events keyed by orderId."""

import os
import sys
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from order_system.domain.events import OrderEvent, OrderStatus, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPIC = f"example-keyed-producer-{uuid.uuid4().hex[:8]}"

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
# Spring declares a NewTopic @Bean; here the admin client creates it: 3 partitions
admin.create_topics([NewTopic(TOPIC, 3, min(3, brokers))])[TOPIC].result(timeout=15)


def on_delivery(err, msg):
    """Called from poll()/flush() once the broker answered: Spring's whenComplete((result, ex) -> ...)."""
    if err is not None:
        print(f"publish failed: {err}")
        return
    event = OrderEvent.from_json(msg.value())
    print(f"published order={msg.key().decode()} status={event.status.value} "
          f"partition={msg.partition()} offset={msg.offset()}")


config = {
    "bootstrap.servers": BOOTSTRAP,
    "enable.idempotence": True,  # a retried send neither duplicates nor reorders (the Java client's default)
    "partitioner": "murmur2_random",  # hash keys as Java does: an order lands where a Spring producer puts it
    "delivery.timeout.ms": 10000,  # give up on an event after 10 s (the callback then gets the error)
}
try:
    with Producer(config) as producer:  # leaving the block flushes and closes the producer
        for customer in ("customer-123", "customer-456", "customer-789"):
            order_id = new_order_id()
            events = [OrderEvent.created(order_id, customer)] + [
                OrderEvent.for_status(status, order_id, customer, version)
                for version, status in enumerate([OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED], 2)
            ]
            for event in events:
                # kafkaTemplate.send(TOPIC, event.orderId(), event): same key -> same partition -> same order
                producer.produce(TOPIC, key=event.key(), value=event.to_json(), headers=event.headers(),
                                 on_delivery=on_delivery)
                producer.poll(0)  # serve delivery callbacks of earlier sends, without waiting
        left = producer.flush(10)  # wait until every event is acknowledged (or failed)
        print(f"not acknowledged: {left}")
finally:
    admin.delete_topics([TOPIC])[TOPIC].result(timeout=15)
