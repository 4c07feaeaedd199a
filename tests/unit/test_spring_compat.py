"""Reading the Spring tutorial's events (no eventId, no version, zone-less timestamp, __TypeId__)."""

from __future__ import annotations

import ast
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import order_system
from order_system.config import PARTITIONER, Settings
from order_system.kafka.consumer import Received, decode
from order_system.domain.errors import ConfigError, InvalidEvent
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.services.analytics import AnalyticsService
from order_system.services.notifications import NotificationService
from order_system.services.processor import OrderProcessor
from order_system.kafka.spring_compat import (
    SPRING_TYPE_HEADER, UnversionedEvent, assign_version, derived_event_id, read_event,
)

TUTORIAL_TYPE = b"com.example.kafka.model.OrderEvent"


def spring_record(status: str = "CREATED", order_id: str = "abc12345", offset: int = 0, partition: int = 2,
                  timestamp: object = "2024-01-15T10:30:00", topic: str = "order-events",
                  headers: dict[str, bytes] | None = None, **fields: object) -> Received:
    """A record as the Spring tutorial's KafkaTemplate with Spring's JSON serializer writes it."""
    value = {"orderId": order_id, "customerId": "c1", "status": status, "description": f"Order {str(status).lower()}",
             "timestamp": timestamp, **fields}
    return Received(topic=topic, partition=partition, offset=offset, key=order_id, timestamp_ms=0,
                    headers={SPRING_TYPE_HEADER: TUTORIAL_TYPE, **(headers or {})},
                    value=json.dumps(value, separators=(",", ":")).encode(), raw_key=order_id.encode())


def test_the_issues_example_is_read_with_filled_in_fields() -> None:
    event = decode(spring_record())
    assert isinstance(event, UnversionedEvent)
    assert (event.order_id, event.customer_id, event.status, event.description) == (
        "abc12345", "c1", OrderStatus.CREATED, "Order created")
    assert event.timestamp == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    assert event.event_id == uuid.uuid5(uuid.NAMESPACE_URL, "kafka:order-events/2/0")
    assert event.version == 1  # provisional: the order-processor assigns the real one


def test_strict_parsing_stays_the_default() -> None:
    with pytest.raises(InvalidEvent) as raised:
        OrderEvent.from_json(spring_record().value)
    assert "eventId: Field required" in str(raised.value) and "version" in str(raised.value)


def test_a_zone_less_timestamp_is_read_in_the_configured_zone() -> None:
    berlin = decode(spring_record(), zone="Europe/Berlin")
    assert berlin.timestamp == datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)
    assert decode(spring_record(timestamp="2024-07-01T10:30:00.123456789"), zone="Europe/Berlin").timestamp == \
        datetime(2024, 7, 1, 8, 30, 0, 123456, tzinfo=timezone.utc)
    zoned = decode(spring_record(timestamp="2024-01-15T10:30:00+05:00"), zone="Europe/Berlin")
    assert zoned.timestamp == datetime(2024, 1, 15, 5, 30, tzinfo=timezone.utc)  # a zone on the wire wins


def test_jackson_2_array_timestamps_are_read_too() -> None:
    event = decode(spring_record(timestamp=[2024, 1, 15, 10, 30, 5, 123456789]))
    assert event.timestamp == datetime(2024, 1, 15, 10, 30, 5, 123456, tzinfo=timezone.utc)
    assert decode(spring_record(timestamp=[2024, 1, 15, 10, 30])).timestamp.minute == 30


@pytest.mark.parametrize("timestamp", ["yesterday", "2024-13-45T10:30:00", [2024, 13, 1], [True, 1, 1],
                                       "2024-01-15T10:30:00" + "0" * 100, {"year": 2024}, None])
def test_bad_timestamps_are_still_refused(timestamp: object) -> None:
    with pytest.raises(InvalidEvent, match="timestamp"):
        decode(spring_record(timestamp=timestamp))


@pytest.mark.parametrize("status", [["CREATED"], {"a": 1}, "LOST", None])
def test_bad_statuses_are_refused_not_crashed_on(status: object) -> None:
    with pytest.raises(InvalidEvent, match="status"):
        decode(spring_record(status=status))  # type: ignore[arg-type]


def test_the_event_id_is_fixed_by_where_the_record_was_first_written() -> None:
    first = decode(spring_record(offset=17))
    assert decode(spring_record(offset=17)).event_id == first.event_id  # a redelivery
    assert decode(spring_record(offset=18)).event_id != first.event_id
    assert decode(spring_record(partition=1, offset=17)).event_id != first.event_id
    retried = spring_record(topic="order-events-retry-0", offset=3, headers={
        "original-topic": b"order-events", "original-partition": b"2", "original-offset": b"17"})
    replayed_as_is = spring_record(topic="order-events", offset=99, headers={
        "dlt-original-topic": b"order-events", "dlt-original-partition": b"2", "dlt-original-offset": b"17"})
    assert decode(retried).event_id == decode(replayed_as_is).event_id == first.event_id


@pytest.mark.parametrize("bad", [{"original-topic": b"", "original-partition": b"2", "original-offset": b"1"},
                                 {"original-topic": b"t", "original-partition": b"-1", "original-offset": b"1"},
                                 {"original-topic": b"t", "original-partition": b"2", "original-offset": b"9" * 40},
                                 {"original-topic": b"t", "original-partition": b"2"},
                                 {"original-topic": b"t", "original-partition": "²".encode(), "original-offset": b"1"},
                                 {"original-topic": b"t", "original-partition": b"\xff", "original-offset": b"1"}])
def test_malformed_origin_headers_fall_back_to_the_records_own_place(bad: dict[str, bytes]) -> None:
    assert decode(spring_record(offset=5, headers=bad)).event_id == derived_event_id("order-events", 2, 5)


def test_our_own_events_are_read_unchanged() -> None:
    ours = OrderEvent.paid("abc12345", "c1", 2)
    record = Received(topic="t", partition=0, offset=9, key="abc12345", timestamp_ms=0, headers=dict(ours.headers()),
                      value=ours.to_json(), raw_key=b"abc12345")
    read = read_event(record)
    assert type(read) is OrderEvent and read == ours


def test_a_spring_event_with_an_id_but_no_version_keeps_its_id() -> None:
    given = uuid.uuid4()
    event = decode(spring_record(status="PAID", eventId=str(given)))
    assert isinstance(event, UnversionedEvent) and event.event_id == given and event.version == 2


def test_versioned_spring_event_is_not_provisional() -> None:
    event = decode(spring_record(status="PAID", version=2))
    assert type(event) is OrderEvent and event.version == 2


def test_assign_version_counts_on_from_the_orders_history() -> None:
    created = decode(spring_record("CREATED", offset=0))
    assert assign_version(created, lambda order_id: []).version == 1
    recorded = assign_version(created, lambda order_id: [])
    cancelled = decode(spring_record("CANCELLED", offset=1))
    assert cancelled.version == 5  # provisional
    assigned = assign_version(cancelled, lambda order_id: [recorded])
    assert type(assigned) is OrderEvent and assigned.version == 2
    assert assign_version(created, lambda order_id: [recorded]).version == 1  # the redelivery: its recorded version
    ours = OrderEvent.paid("abc12345", "c1", 7)
    assert assign_version(ours, lambda order_id: pytest.fail("history is not read for versioned events")) is ours


def test_processor_runs_a_spring_lifecycle_and_recognises_redeliveries() -> None:
    processor = OrderProcessor()
    records = [spring_record(s, offset=n) for n, s in enumerate(["CREATED", "PAID", "SHIPPED", "DELIVERED"])]
    for record in records:
        assert "is " in processor.handle(decode(record), record)
    order = processor.get("abc12345")
    assert order is not None and order.status is OrderStatus.DELIVERED and order.version == 4
    assert [e.version for e in order.history] == [1, 2, 3, 4]
    effects = processor.effect_counts()
    again = processor.handle(decode(records[1]), records[1])  # PAID redelivered after DELIVERED
    assert "duplicate" in again and processor.effect_counts() == effects


def test_processor_mixes_spring_and_our_events_of_one_order() -> None:
    processor = OrderProcessor()
    processor.handle(decode(spring_record("CREATED", offset=0)))
    processor.handle(OrderEvent.paid("abc12345", "c1", 2))  # our API, versioned from the processor's state
    processor.handle(decode(spring_record("CANCELLED", offset=7)))
    order = processor.get("abc12345")
    assert order is not None and order.status is OrderStatus.CANCELLED and order.version == 3
    assert "payment-refunded" in processor.effect_counts()


def test_the_other_groups_need_no_version() -> None:
    notifications, analytics = NotificationService(), AnalyticsService()
    records = [spring_record(s, offset=n) for n, s in enumerate(["CREATED", "PAID", "CANCELLED"])]
    for record in records + records[:2]:  # two redeliveries
        notifications.notify(decode(record), record)
        analytics.observe(decode(record), record)
    assert notifications.count() == 3
    assert analytics.events_seen == 3
    assert analytics.status_counts().loc["CANCELLED", "orders_now"] == 1


def test_time_zone_setting_comes_from_the_environment() -> None:
    assert Settings.from_env({}).local_timezone == "UTC"
    assert Settings.from_env({"ORDER_SYSTEM_LOCAL_TIMEZONE": "Asia/Tokyo"}).local_timezone == "Asia/Tokyo"
    for bad in ("Mars/Olympus", "../etc/passwd", "x" * 300):
        with pytest.raises(ConfigError, match="ORDER_SYSTEM_LOCAL_TIMEZONE"):
            Settings.from_env({"ORDER_SYSTEM_LOCAL_TIMEZONE": bad})


def test_producers_partition_like_the_java_client() -> None:
    config = Settings().producer_config(**{"acks": "all"})
    assert config["partitioner"] == PARTITIONER == "murmur2_random" and config["acks"] == "all"
    assert "partitioner" not in Settings().client_config()  # consumers and admin clients do not take it


def test_every_producer_of_the_package_is_built_from_producer_config() -> None:
    """A producer built any other way would hash keys with librdkafka's default (CRC32)."""
    built = []
    for path in Path(order_system.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Producer":
                config = node.args[0] if node.args else None
                ok = isinstance(config, ast.Call) and getattr(config.func, "attr", None) == "producer_config"
                built.append((path.name, node.lineno, ok))
    assert built and all(ok for _, _, ok in built), built
