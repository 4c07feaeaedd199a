"""The notebook dashboard against the real broker: buttons, the status line, the lag chart, Stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from order_system import OrderProcessor, OrderProducer, OrderView, Settings, runner_for
from order_system.kafka.consumer import ConsumerRunner
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


def test_a_burst_charts_lag_rising_and_draining(parts) -> None:  # type: ignore[no-untyped-def]
    producer, view, runner, stops = parts
    dashboard = OrderDashboard(producer, view, runners=[runner], burst_orders=300)
    before = runner.processed
    thread = dashboard.start_burst()
    assert thread is not None and dashboard.burst_button.disabled
    thread.join(timeout=180)
    assert not thread.is_alive()
    frame = dashboard.last_watch
    assert frame is not None, dashboard.lag_note.value
    lag = frame[frame["group"] == "order-processor"]
    assert lag["lag"].max() > 0 and lag["lag"].iloc[-1] == 0, lag.to_string()
    assert lag["handled"].iloc[-1] - before == runner.processed - before > 0
    assert "drained back to 0" in dashboard.lag_note.value
    assert bytes(dashboard.lag_chart.value).startswith(b"\x89PNG")
    assert not dashboard.burst_button.disabled


def test_a_failing_clean_up_is_shown_not_raised(parts) -> None:  # type: ignore[no-untyped-def]
    producer, view, runner, _ = parts

    def broken() -> None:
        raise RuntimeError("could not delete the topics")

    dashboard = OrderDashboard(producer, view, on_stop=broken)
    dashboard.stop_button.click()
    assert "clean-up failed: could not delete the topics" in dashboard.last_message
    assert dashboard.create_button.disabled and dashboard.burst_button.disabled
