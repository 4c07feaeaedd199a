"""OrderView against the real broker: the whole changelog, read-your-writes, verdicts.

The records are written here the way the order-processor writes them (``domain.changelog``
formats, in Kafka transactions, the input offsets committed in the same transaction), so what
the view does with committed, aborted and still-open transactions is tested on the wire.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from order_system.config import Settings
from order_system.domain.changelog import Outcome, Verdict, order_to_json
from order_system.domain.errors import CommandRejected, StillProcessing, UnknownOrder
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.domain.state_machine import Order
from order_system.kafka.partitioner import partition_for
from order_system.kafka.producer import OrderProducer
from order_system.kafka.topics import admin_client, delete_topics
from order_system.services.commands import OrderCommands
from order_system.state.view import OrderView


@pytest.fixture
def view_settings(topic_settings: Settings) -> Iterator[Settings]:
    """The main topics plus order-state (compacted) and order-verdicts, all with 3 partitions."""
    admin = admin_client(topic_settings)
    wanted = [NewTopic(topic_settings.state_topic, 3, 1, config={"cleanup.policy": "compact"}),
              NewTopic(topic_settings.verdicts_topic, 3, 1)]
    for future in admin.create_topics(wanted).values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # created already by create_topics (once it makes them all)
            assert "TOPIC_ALREADY_EXISTS" in str(exc), exc
    yield topic_settings
    delete_topics(topic_settings, [topic_settings.state_topic, topic_settings.verdicts_topic])


class Changelog:
    """Writes order-state and order-verdicts records in Kafka transactions, as the processor does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(settings.producer_config(**{"transactional.id": f"test-view-{uuid.uuid4().hex[:8]}"}))
        self.producer.init_transactions(30)

    def _write(self, orders: list[Order], verdicts: list[Verdict]) -> None:
        for order in orders:
            self.producer.produce(self.settings.state_topic, order_to_json(order), order.order_id.encode(),
                                  partition=partition_for(order.order_id, 3))
        for verdict in verdicts:
            self.producer.produce(self.settings.verdicts_topic, verdict.to_json(), (verdict.order_id or "").encode(),
                                  partition=verdict.partition)

    def commit(self, orders: list[Order] = (), verdicts: list[Verdict] = (), consumer: Consumer | None = None) -> None:
        self.producer.begin_transaction()
        self._write(list(orders), list(verdicts))
        if consumer is not None:  # the input offsets in the same transaction
            self.producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                      consumer.consumer_group_metadata(), 30)
        self.producer.commit_transaction(30)

    def abort(self, orders: list[Order]) -> None:
        self.producer.begin_transaction()
        self._write(orders, [])
        self.producer.flush(30)
        self.producer.abort_transaction(30)

    @contextmanager
    def open(self, orders: list[Order]) -> Iterator[None]:
        """A transaction left open (flushed to the broker, neither committed nor aborted) meanwhile."""
        self.producer.begin_transaction()
        self._write(orders, [])
        self.producer.flush(30)
        try:
            yield
        finally:
            self.producer.abort_transaction(30)


def lifecycle(order_id: str, steps: int, customer: str = "c-1") -> Order:
    order = Order.start(OrderEvent.created(order_id, customer))
    for version, status in enumerate([OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED][:steps - 1], 2):
        order = order.apply(OrderEvent.for_status(status, order_id, customer, version))
    return order


def test_our_partition_of_a_key_is_where_the_producer_puts_it(view_settings: Settings) -> None:
    keys = [f"k{n}-{uuid.uuid4().hex[:6]}" for n in range(60)]
    with OrderProducer(view_settings) as producer:
        futures = [producer.publish_raw(b"{}", key=key.encode()) for key in keys]
    assert [f.result(timeout=60).partition for f in futures] == [partition_for(k, 3) for k in keys]


def test_the_view_holds_every_order_and_catch_up_shows_the_latest_commit(view_settings: Settings) -> None:
    log = Changelog(view_settings)
    first = [lifecycle(f"o{n}", 1 + n % 3) for n in range(30)]
    log.commit(first)
    # start() returns once everything committed before is read
    with OrderView(view_settings) as view, OrderView(view_settings) as other:
        assert {o: view.get(o).version for o in view.statuses()} == {o.order_id: o.version for o in first}
        assert view.partitions == 3 and {view.partition_of(o.order_id) for o in first} == {0, 1, 2}
        for n in range(20):
            newer = lifecycle(f"new{n}", 1 + n % 3)
            log.commit([newer])
            # another instance saw the commit (as a command sees its verdict): after catch_up, so does this one
            assert other.wait_for_version(newer.order_id, newer.version, timeout=10)
            assert view.catch_up(newer.order_id, timeout=10)
            assert view.get(newer.order_id) == newer
        gone = first[0].order_id  # a tombstone deletes an order; a later record of its partition marks the point
        marker = next(f"t{n}" for n in range(100) if partition_for(f"t{n}", 3) == partition_for(gone, 3))
        log.producer.begin_transaction()
        log.producer.produce(view_settings.state_topic, None, gone.encode(), partition=partition_for(gone, 3))
        log.producer.produce(view_settings.state_topic, order_to_json(lifecycle(marker, 1)), marker.encode(),
                             partition=partition_for(marker, 3))
        log.producer.commit_transaction(30)
        assert view.wait_for_version(marker, 1, timeout=10) and view.get(gone) is None
        page = view.summaries(status=OrderStatus.CREATED, limit=5)
        assert len(page) == 5 and all(row["status"] == "CREATED" for row in page)
        assert view.summaries(customer_id="nobody") == []


def test_aborted_and_open_transactions_are_never_seen(view_settings: Settings) -> None:
    log = Changelog(view_settings)
    log.commit([lifecycle("kept", 1)])
    with OrderView(view_settings) as view:
        log.abort([lifecycle("aborted", 1), lifecycle("kept", 2)])
        log.commit([lifecycle("aborted", 1, customer="later"), lifecycle("kept", 3)])  # same partitions, after
        assert view.wait_for_version("aborted", 1, 10) and view.wait_for_version("kept", 3, 10)
        assert view.get("aborted").customer_id == "later"  # the aborted record was never applied
        assert view.catch_up("kept", 10) and view.get("kept").version == 3
        with log.open([lifecycle("pending", 1)]):
            began = time.monotonic()
            assert view.catch_up("pending", 10)  # up to the last stable offset: the open one is not waited for
            assert time.monotonic() - began < 5 and view.get("pending") is None


def test_poison_records_are_skipped_and_counted(view_settings: Settings) -> None:
    log = Changelog(view_settings)
    log.producer.begin_transaction()
    for partition in range(3):
        log.producer.produce(view_settings.state_topic, b"\xff not json", b"bad", partition=partition)
        log.producer.produce(view_settings.state_topic, b'{"format":1,"orderId":"x","history":[]}', b"x",
                             partition=partition)
    log.producer.commit_transaction(30)
    log.commit([lifecycle("good", 2)])
    with OrderView(view_settings) as view:
        assert view.bad_records == 6 and view.get("good").version == 2 and len(view) == 1


def test_a_verdict_is_kept_only_for_an_event_someone_waits_on(view_settings: Settings) -> None:
    log = Changelog(view_settings)
    with OrderView(view_settings) as view:
        mine, other = (OrderEvent.for_status(OrderStatus.PAID, o, "c-1", 2) for o in ("v1", "v2"))
        view.expect("v1", str(mine.event_id))
        assert view.verdict(str(mine.event_id), timeout=0.2) is None  # bounded: nothing came
        view.expect("v1", str(mine.event_id))
        log.producer.begin_transaction()
        log.producer.produce(view_settings.verdicts_topic, b"poison", b"v1", partition=0)
        log.producer.commit_transaction(30)
        log.commit(verdicts=[Verdict.of(Outcome.ACCEPTED, other, 1, 7),
                             Verdict.of(Outcome.REJECTED, mine, 0, 8, "version-conflict", "v2 is taken")])
        verdict = view.verdict(str(mine.event_id), timeout=10)
        assert verdict is not None and verdict.outcome is Outcome.REJECTED and verdict.reason == "version-conflict"
        assert view.waiting == 0 and view.bad_records == 1


def test_too_many_waiting_commands_are_refused(view_settings: Settings) -> None:
    with OrderView(view_settings, max_waiting=2) as view:
        view.expect("a", "e1")
        view.expect("a", "e2")
        with pytest.raises(StillProcessing):
            view.expect("a", "e3")
        view.forget("e1")
        view.expect("a", "e3")


@pytest.fixture
def group(unique: Callable[[str], str]) -> str:
    return unique("test-view-processor")


def processed(settings: Settings, group: str, log: Changelog, verdict: Callable[[OrderEvent], Outcome],
              orders: dict[str, Order] | None = None) -> Callable[[], int]:
    """A step of a stand-in processor (holding ``orders``): read what is on order-events (group
    ``group``), answer each event with a verdict and, if accepted, its state, committing the
    offsets in the same transaction."""
    consumer = Consumer(settings.client_config(**{"group.id": group, "enable.auto.commit": False,
                                                  "auto.offset.reset": "earliest"}))
    consumer.subscribe([settings.topic])
    orders = dict(orders or {})

    def step() -> int:
        messages = [m for m in consumer.consume(100, 1.0) if m.error() is None]
        if not messages:
            return 0
        changed, verdicts = [], []
        for message in messages:
            event = OrderEvent.from_json(message.value())
            outcome = verdict(event)
            if outcome is Outcome.ACCEPTED:
                current = orders.get(event.order_id)
                orders[event.order_id] = current.apply(event) if current else Order.start(event)
                changed.append(orders[event.order_id])
            verdicts.append(Verdict.of(outcome, event, message.partition(), message.offset(),
                                       None if outcome is Outcome.ACCEPTED else "version-conflict"))
        log.commit(changed, verdicts, consumer)
        return len(messages)

    step.close = consumer.close  # type: ignore[attr-defined]
    return step


def test_an_order_not_processed_yet_is_waited_for_then_found(view_settings: Settings, group: str) -> None:
    log = Changelog(view_settings)
    with OrderView(view_settings, processor_group=group) as view, OrderProducer(view_settings) as producer:
        event = OrderEvent.created("fresh001", "c-1")
        producer.publish(event).result(timeout=30)
        began = time.monotonic()
        assert not view.wait_processed("fresh001", timeout=0.5)  # nobody processes: bounded, False
        assert time.monotonic() - began < 5
        step = processed(view_settings, group, log, lambda e: Outcome.ACCEPTED)
        try:
            deadline = time.monotonic() + 60
            while not step() and time.monotonic() < deadline:
                pass
            assert view.wait_processed("fresh001", timeout=10) and view.catch_up("fresh001", timeout=10)
            assert view.get("fresh001").status is OrderStatus.CREATED
        finally:
            step.close()  # type: ignore[attr-defined]


def test_commands_answer_with_the_processors_verdict(view_settings: Settings, group: str) -> None:
    log = Changelog(view_settings)
    known = [lifecycle("cmd00001", 1), lifecycle("cmd00002", 1)]
    log.commit(known)
    refuse = {"cmd00002"}
    step = processed(view_settings, group, log,
                     lambda e: Outcome.REJECTED if e.order_id in refuse else Outcome.ACCEPTED,
                     {o.order_id: o for o in known})
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while not stop.is_set():
                step()
        except BaseException as exc:
            failures.append(exc)

    with OrderView(view_settings, processor_group=group) as view, OrderProducer(view_settings) as producer:
        commands = OrderCommands(producer, view, view_timeout=5, verdict_timeout=30)
        stop = threading.Event()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            event, _ = commands.advance("cmd00001", "c-1", OrderStatus.PAID)
            assert event.version == 2
            assert commands.read("cmd00001").version == 2  # read-your-writes
            with pytest.raises(CommandRejected, match="version-conflict"):
                commands.advance("cmd00002", "c-1", OrderStatus.PAID)
            with pytest.raises(UnknownOrder):
                commands.read("nosuch01")
            assert commands.tracked == (0, 0)
        finally:
            stop.set()
            worker.join(30)
            step.close()  # type: ignore[attr-defined]
        assert not failures
        commands.verdict_timeout = 0.5  # nobody processes now: a bounded wait, then 503's error
        with pytest.raises(StillProcessing):
            commands.advance("cmd00001", "c-1", OrderStatus.SHIPPED)
