"""The notebook dashboard against the real broker: buttons, the status line, the lag chart, Stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from order_system import OrderProcessor, OrderProducer, OrderView, Settings, runner_for
from order_system.domain.events import OrderEvent, OrderStatus
from order_system.kafka.consumer import ConsumerRunner, Received
from order_system.interfaces.dashboard import OrderDashboard


@pytest.fixture
def parts(topic_settings: Settings) -> Iterator[tuple[OrderProducer, OrderView, ConsumerRunner, list[str]]]:
    producer = OrderProducer(topic_settings)
    runner = runner_for(OrderProcessor(instance_id="test-dashboard"), topic_settings).start()
    assert runner.wait_assigned(60)
    view = OrderView(topic_settings).start()
    stops: list[str] = []
    yield producer, view, runner, stops
    view.stop()
    if runner.running:
        runner.stop()
    producer.close()


def stopper(producer: OrderProducer, runner: ConsumerRunner, stops: list[str]):  # type: ignore[no-untyped-def]
    def stop() -> None:
        runner.stop()
        producer.close()
        stops.append("stopped")
    return stop


def test_buttons_walk_an_order_and_the_status_line_follows(parts) -> None:  # type: ignore[no-untyped-def]
    producer, view, runner, stops = parts
    dashboard = OrderDashboard(producer, view, runners=[runner], on_stop=stopper(producer, runner, stops))
    # what the real-browser test relies on: the labels and the status widget's CSS class
    assert dashboard.create_button.description == "Create"
    assert [b.description for b in dashboard.buttons.values()] == ["Pay", "Ship", "Deliver", "Cancel"]
    assert "order-status" in dashboard.status._dom_classes
    assert "No order selected" in dashboard.status.value

    assert dashboard.click("Create").startswith("Created order")
    first = dashboard.order.value
    assert f"Order {first}: <b>CREATED</b>" in dashboard.status.value
    assert dashboard.enabled() == {"Pay": True, "Ship": False, "Deliver": False, "Cancel": True}
    for name, status in (("Pay", "PAID"), ("Ship", "SHIPPED"), ("Deliver", "DELIVERED")):
        assert f"is now {status}" in dashboard.click(name)
        assert f"<b>{status}</b>" in dashboard.status.value
    assert dashboard.click("Cancel") == "Cancel is disabled for this order"

    assert dashboard.click("Create").startswith("Created order")
    second = dashboard.order.value
    assert second != first and "CREATED" in dashboard.status.value and dashboard.message.value
    dashboard.order.value = first  # the learner picks the earlier order: the last message no longer applies
    assert dashboard.message.value == "" and dashboard.last_message == ""
    assert f"Order {first}: <b>DELIVERED</b>" in dashboard.status.value
    assert not any(dashboard.enabled().values())
    dashboard.order.value = second
    assert "is now CANCELLED" in dashboard.click("Cancel")
    assert list(dashboard.frame()["status"]) == ["DELIVERED", "CANCELLED"]

    dashboard.stop()
    assert stops == ["stopped"] and not runner.running
    assert "(stopped)" in dashboard.status.value and "Stopped" in dashboard.last_message
    assert all(b.disabled for b in (dashboard.create_button, dashboard.burst_button, *dashboard.buttons.values()))
    assert dashboard.click("Create") == "Create is disabled for this order"
    dashboard.stop()  # again: nothing happens, nothing raises
    assert stops == ["stopped"]


def test_a_burst_charts_lag_rising_and_draining(parts, topic_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """A second group holds its first record until a lag sample has caught it behind, so the chart
    shows a rise for certain (the order-processor alone can drain a burst between two samples)."""
    producer, view, runner, _ = parts
    gated = f"gated-{topic_settings.topic}"
    dashboards: list[OrderDashboard] = []
    opened = threading.Event()

    def hold_until_seen_behind(event: OrderEvent, received: Received) -> None:
        if not opened.is_set():
            watch = dashboards[0].watch
            assert watch is not None  # the burst publishes inside its watch
            watch.wait_until(lambda w: w.latest().get(gated, 0) > 0, timeout=60)
            opened.set()

    held = ConsumerRunner(topic_settings, gated, {status: hold_until_seen_behind for status in OrderStatus}).start()
    try:
        assert held.wait_assigned(60)
        dashboard = OrderDashboard(producer, view, runners=[runner, held], burst_orders=300)
        dashboards.append(dashboard)
        before = runner.processed
        thread = dashboard.start_burst()
        assert thread is not None and dashboard.burst_button.disabled
        thread.join(timeout=180)
        assert not thread.is_alive() and opened.is_set()
    finally:
        held.stop()
    frame = dashboard.last_watch
    assert frame is not None, dashboard.lag_note.value
    behind = frame[frame["group"] == gated]
    assert behind["lag"].max() > 0 and behind["lag"].iloc[-1] == 0, behind.to_string()
    processor = frame[frame["group"] == "order-processor"]
    assert processor["lag"].iloc[-1] == 0, processor.to_string()
    published = int(dashboard.lag_note.value.split()[0])
    assert processor["handled"].iloc[-1] - before == runner.processed - before == published > 0
    assert f"{published} events: lag rose to {frame['lag'].max()} and drained back to 0." == dashboard.lag_note.value
    assert bytes(dashboard.lag_chart.value).startswith(b"\x89PNG")
    assert not dashboard.burst_button.disabled


def test_a_burst_drained_between_two_samples_is_reported_drained(parts) -> None:  # type: ignore[no-untyped-def]
    """The order-processor alone may drain a burst before any sample catches it behind; the
    dashboard says it drained (it once waited 120 s and said the groups had not caught up)."""
    producer, view, runner, _ = parts
    dashboard = OrderDashboard(producer, view, runners=[runner], burst_orders=100)
    before = runner.processed
    began = time.monotonic()
    thread = dashboard.start_burst()
    assert thread is not None
    thread.join(timeout=180)
    assert not thread.is_alive() and time.monotonic() - began < 60
    frame = dashboard.last_watch
    assert frame is not None, dashboard.lag_note.value
    assert frame["lag"].iloc[-1] == 0, frame.to_string()
    published = int(dashboard.lag_note.value.split()[0])
    assert runner.processed - before == published > 0
    assert "drained" in dashboard.lag_note.value and "did not catch up" not in dashboard.lag_note.value


def test_a_failing_clean_up_is_shown_not_raised(parts) -> None:  # type: ignore[no-untyped-def]
    producer, view, runner, _ = parts

    def broken() -> None:
        raise RuntimeError("could not delete the topics")

    dashboard = OrderDashboard(producer, view, on_stop=broken)
    dashboard.stop_button.click()
    assert "clean-up failed: could not delete the topics" in dashboard.last_message
    assert dashboard.create_button.disabled and dashboard.burst_button.disabled
