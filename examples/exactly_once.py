"""Exactly-once read-process-write: the outputs and the input offsets commit in one transaction."""

import os
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from order_system.domain.events import OrderEvent, OrderStatus, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SUFFIX = uuid.uuid4().hex[:8]
EVENTS, NOTES, GROUP = f"example-eos-events-{SUFFIX}", f"example-eos-notes-{SUFFIX}", f"notification-service-{SUFFIX}"

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
for future in admin.create_topics([NewTopic(t, 3, min(3, brokers)) for t in (EVENTS, NOTES)]).values():
    future.result(timeout=15)
order, S = new_order_id(), OrderStatus
INPUT = [OrderEvent.for_status(s, order, "customer-123", v) for v, s in enumerate([S.CREATED, S.PAID, S.SHIPPED], 1)]
with Producer({"bootstrap.servers": BOOTSTRAP}) as producer:
    for event in INPUT:
        producer.produce(EVENTS, key=event.key(), value=event.to_json(), headers=event.headers())


def read_all(isolation: str) -> list[str]:  # every record of the output topic, as this isolation.level sees it
    config = {"bootstrap.servers": BOOTSTRAP, "group.id": f"reader-{SUFFIX}", "isolation.level": isolation,
              "enable.auto.commit": False, "enable.partition.eof": True}  # EOF: an event at a partition's end
    values, ended, deadline = [], set(), time.monotonic() + 10
    with Consumer(config) as reader:
        reader.assign([TopicPartition(NOTES, p, OFFSET_BEGINNING) for p in range(3)])  # no group join
        while len(ended) < 3 and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is not None and msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
                ended.add(msg.partition())
            elif msg is not None and not msg.error():
                values.append(msg.value().decode())
    return values


config = {"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
          "enable.auto.commit": False,  # the transaction commits the offsets, never the consumer
          "isolation.level": "read_committed"}  # skip what aborted transactions wrote to the input
try:
    with Consumer(config) as consumer, Producer({"bootstrap.servers": BOOTSTRAP,
                                                 "transactional.id": f"example-eos-{SUFFIX}"}) as producer:
        producer.init_transactions(15)  # registers transactional.id, fencing any older producer with that id
        consumer.subscribe([EVENTS])
        batch, deadline = [], time.monotonic() + 15
        while len(batch) < len(INPUT) and time.monotonic() < deadline:  # one batch: every input event
            received = consumer.consume(len(INPUT) - len(batch), timeout=1.0)  # records, and error events
            batch += [msg for msg in received if not msg.error()]  # (consumer_loop.py prints the errors)
        for attempt in (1, 2):  # the first transaction fails before its commit, the second commits
            producer.begin_transaction()
            try:
                for msg in batch:  # the processing: one notification per event
                    event = OrderEvent.from_json(msg.value())
                    producer.produce(NOTES, key=msg.key(), value=f"order {event.order_id} is {event.status.value}")
                if attempt == 1:
                    producer.flush(10)  # the notes reach the broker ...
                    raise RuntimeError("crash before commit (simulated)")  # ... but the commit never comes
                offsets = consumer.position(consumer.assignment())  # per partition, the next offset to read
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
                producer.commit_transaction()  # the notes and the input offsets: both, or neither
                print(f"transaction {attempt}: wrote {len(batch)} notes, committed with the input offsets")
            except Exception as exc:  # noqa: BLE001 -- whatever failed, the transaction is aborted
                producer.abort_transaction()  # its records stay in the log, marked aborted
                print(f"transaction {attempt}: wrote {len(batch)} notes; {exc}: aborted")  # a real loop rewinds
    for isolation in ("read_committed", "read_uncommitted"):  # read_uncommitted: aborted records too
        notes = read_all(isolation)
        print(f"{isolation} reader: {len(notes)} notes, {len(set(notes))} distinct", *notes, sep="\n  ")
finally:
    for future in [*admin.delete_topics([EVENTS, NOTES]).values(), *admin.delete_consumer_groups([GROUP]).values()]:
        future.result(timeout=15)
