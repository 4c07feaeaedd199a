"""The tutorial's OrderController: POST /api/orders turns a request into an OrderCreated event."""

import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future

import httpx
import uvicorn
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from order_system.domain.events import OrderEvent, new_order_id

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPIC = f"example-rest-endpoint-{uuid.uuid4().hex[:8]}"

admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 2})  # 2: no log line per failed connect
try:
    brokers = len(admin.list_topics(timeout=5).brokers)  # a metadata request: does a broker answer?
except KafkaException as exc:
    sys.exit(f"no Kafka broker answers at {BOOTSTRAP} ({exc.args[0].str()}); start one: order-system broker start")
admin.create_topics([NewTopic(TOPIC, 3, min(3, brokers))])[TOPIC].result(timeout=15)

# One producer for the whole app (Spring: the KafkaTemplate bean); it is thread-safe. As in keyed_producer.py
producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "partitioner": "murmur2_random",
                     "delivery.timeout.ms": 10000})
app = FastAPI()


class CreateOrder(BaseModel):  # the request body: {"customerId": "customer-123"}
    customer_id: str = Field(alias="customerId", min_length=1)  # a missing or empty one: 422, naming it


@app.post("/api/orders", status_code=201)
def create_order(request: CreateOrder) -> dict:  # a plain def: FastAPI runs it in a worker thread, it may block
    event = OrderEvent.created(new_order_id(), request.customer_id)
    acked: Future = Future()  # completed by the delivery callback (Spring: the CompletableFuture send() returns)
    producer.produce(TOPIC, key=event.key(), value=event.to_json(), headers=event.headers(),
                     on_delivery=lambda err, msg: acked.set_exception(KafkaException(err)) if err
                     else acked.set_result(msg))
    producer.flush(12)  # serves the callback once the broker answered: kafkaTemplate.send(...).get()
    try:
        msg = acked.result(timeout=0)
    except (KafkaException, TimeoutError) as exc:  # answer only once the event is safe, or say it is not
        raise HTTPException(503, f"the broker did not acknowledge the event: {exc}") from exc
    return {"orderId": event.order_id, "partition": msg.partition(), "offset": msg.offset()}


# uvicorn in a background thread, on a port the OS picks (port=0), so that this script can call it
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True)
try:
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    reply = httpx.post(f"http://127.0.0.1:{port}/api/orders", json={"customerId": "customer-123"}, timeout=15)
    print(f"POST /api/orders -> {reply.status_code} {reply.text}")  # like the tutorial's curl
    answer = reply.json()
    # Read the record back where the answer says it is: no group join, just assign() and poll()
    with Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "read-back", "enable.auto.commit": False}) as reader:
        reader.assign([TopicPartition(TOPIC, answer["partition"], answer["offset"])])
        msg = reader.poll(10)
    if msg is None or msg.error():
        sys.exit(f"could not read the event back: {msg.error() if msg else 'nothing came within 10 s'}")
    event = OrderEvent.from_json(msg.value())
    print(f"read back at partition={msg.partition()} offset={msg.offset()}: {event.event_type} of order "
          f"{event.order_id} for {event.customer_id}")
finally:
    server.should_exit = True  # uvicorn's own shutdown: finish the requests, stop serving
    thread.join(timeout=10)
    producer.flush(5)
    admin.delete_topics([TOPIC])[TOPIC].result(timeout=15)
