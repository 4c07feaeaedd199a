"""An ipywidgets dashboard: buttons that create and advance orders over a live table, and a
chart of each consumer group's lag while a burst of events goes through.

Every click goes through ``OrderCommands``, the same path as the REST API: the event is
published to Kafka, the click waits for the order-processor's verdict, and the table shows the
orders from an ``OrderView`` of ``order-state``.
A button whose transition the state machine forbids for the selected order is disabled. The
selected order's status is shown in a widget with the CSS class ``order-status``.

The dashboard never closes what it is given; **Stop** calls the ``on_stop`` it was given (which
stops the consumers and the producer), after which every button is disabled and the status says
"stopped". A burst runs in a background thread, so a click never blocks the notebook.
"""

from __future__ import annotations

import html
import io
import threading
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import pandas as pd

from ..services.commands import OrderCommands
from ..kafka.consumer import ConsumerRunner
from ..domain.errors import OrderSystemError
from ..domain.events import OrderStatus
from ..state.view import OrderView
from ..kafka.lag import LagWatch
from ..kafka.producer import OrderProducer
from ..local.demo import publish_lifecycles
from ..domain.state_machine import allowed_next
from .schemas import ACTIONS as API_ACTIONS

ACTIONS: dict[str, OrderStatus] = {action.value.title(): status for action, status in API_ACTIONS.items()}
BURST_ORDERS = 500  # about 1,800 events: enough to see lag rise and drain in a few seconds
SAMPLE_EVERY = 0.25  # seconds between two lag samples during a burst


class OrderDashboard:
    """``OrderDashboard(producer, view).widget`` shows it; ``click("Pay")`` presses a button.

    With ``runners`` (the consumer groups reading the topic), a **Publish a burst** button sends
    ``BURST_ORDERS`` lifecycles and charts every group's lag and handled events until they drain.
    """

    def __init__(self, producer: OrderProducer, view: OrderView, *, runners: Sequence[ConsumerRunner] = (),
                 on_stop: Callable[[], None] | None = None, burst_orders: int = BURST_ORDERS) -> None:
        self.producer = producer
        self.view = view
        self.runners = list(runners)
        self.on_stop = on_stop
        self.burst_orders = burst_orders
        self.stopped = False
        self.commands = OrderCommands(producer, view)
        self.customer = widgets.Text(value="customer-123", description="Customer")
        self.create_button = widgets.Button(description="Create", button_style="primary", icon="plus")
        self.order = widgets.Dropdown(options=[], description="Order")
        self.buttons = {name: widgets.Button(description=name) for name in ACTIONS}
        self.status = widgets.HTML()
        self.status.add_class("order-status")
        self.message = widgets.HTML()
        self.last_message = ""
        self.table = widgets.HTML()
        self.burst_button = widgets.Button(description="Publish a burst", icon="bolt",
                                           tooltip=f"{burst_orders} order lifecycles at once; watch the lag",
                                           disabled=not self.runners)
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop",
                                          tooltip="stop the consumers and the producer, delete the topics")
        self.lag_note = widgets.HTML("<i>Lag per group: press <b>Publish a burst</b> to watch it rise and "
                                     "drain.</i>" if self.runners else "")
        self.lag_chart = widgets.Image(format="png", layout=widgets.Layout(max_width="720px"))
        self.watch: LagWatch | None = None  # the lag samples of the current (or last) burst
        self.last_watch: pd.DataFrame | None = None
        self._burst: threading.Thread | None = None

        self.create_button.on_click(lambda _: self._create())
        for name, button in self.buttons.items():
            button.on_click(lambda _, n=name: self._advance(n))
        self.burst_button.on_click(lambda _: self.start_burst())
        self.stop_button.on_click(lambda _: self.stop())
        self.order.observe(lambda _: self._selected(), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.customer, self.create_button, self.stop_button]),
            widgets.HBox([self.order, *self.buttons.values()]),
            self.status,
            self.message,
            self.table,
            widgets.HBox([self.burst_button, self.lag_note]),
            self.lag_chart,
        ])
        self._refresh()

    # ---- actions --------------------------------------------------------------------

    def click(self, name: str) -> str:
        """Press a button by its label, as a reader would; returns the message it showed."""
        button = self.create_button if name == "Create" else self.buttons[name]
        if button.disabled:
            return f"{name} is disabled for this order"
        button.click()
        return self.last_message

    def _create(self) -> None:
        if self.stopped:
            self._say("The dashboard is stopped; re-run the notebook to start again", error=True)
            return
        try:
            event, delivery = self.commands.create(self.customer.value.strip() or "customer-123")
            self.commands.read(event.order_id)  # waits until the order-processor made it and the view has it
        except (OrderSystemError, ValueError) as exc:
            self._say(f"Could not create the order: {exc}", error=True)
            return
        self.order.options = [*self.order.options, event.order_id]
        self.order.value = event.order_id
        self._refresh()
        self._say(f"Created order {event.order_id} (partition {delivery.partition}, offset {delivery.offset})")

    def _advance(self, name: str) -> None:
        order_id = self.order.value
        if self.stopped or not order_id:
            self._say("The dashboard is stopped" if self.stopped else "Create an order first", error=True)
            return
        order = self.view.get(order_id)
        customer = order.customer_id if order else self.customer.value
        try:
            event, delivery = self.commands.advance(order_id, customer, ACTIONS[name])
        except OrderSystemError as exc:
            self._refresh()
            self._say(str(exc), error=True)
            return
        self._refresh()
        self._say(f"{name}: order {order_id} is now {event.status.value} (v{event.version}, "
                  f"partition {delivery.partition}, offset {delivery.offset})")

    def stop(self) -> None:
        """Stop once: call ``on_stop``, disable every button, say so. Safe to call again."""
        if self.stopped:
            return
        self.stopped = True
        for button in (self.create_button, self.burst_button, self.stop_button, *self.buttons.values()):
            button.disabled = True
        if self._burst is not None:
            self._burst.join(timeout=150)
        try:
            if self.on_stop is not None:
                self.on_stop()
        except Exception as exc:  # shown, not raised into the widget's event handler
            self._say(f"Stopped, but clean-up failed: {exc}", error=True)
        else:
            self._say("Stopped: the consumers and the producer are closed")
        self._refresh()

    # ---- the burst and its lag chart --------------------------------------------------

    def start_burst(self) -> threading.Thread | None:
        """Publish a burst in a background thread that redraws the lag chart until it drains."""
        if self.stopped or not self.runners or (self._burst is not None and self._burst.is_alive()):
            return None
        self.burst_button.disabled = True
        self._burst = threading.Thread(target=self._run_burst, name="dashboard-burst", daemon=True)
        self._burst.start()
        return self._burst

    def _run_burst(self) -> None:
        groups = {runner.group_id: runner for runner in self.runners}
        try:
            with LagWatch(self.producer.settings, groups, topic=self.producer.topic, interval=SAMPLE_EVERY) as watch:
                self.watch = watch
                futures = publish_lifecycles(self.producer, self.burst_orders)
                for future in futures:
                    future.result(timeout=60)
                published = time.monotonic()
                self.lag_note.value = f"Published {len(futures)} events; the groups are catching up ..."
                deadline = published + 120
                drained = False
                while not drained and time.monotonic() < deadline:
                    drained = watch.wait_drained(timeout=0.5, since=published)  # redraw twice a second meanwhile
                    self._draw_frame(watch.frame())
            self.last_watch = watch.frame()
            self._draw_frame(self.last_watch)
            self.lag_note.value = _burst_note(len(futures), watch.peak(), drained)
        except Exception as exc:
            self.lag_note.value = f'<span style="color:#b00020">Burst failed: {html.escape(str(exc))}</span>'
        finally:
            self.burst_button.disabled = self.stopped

    def _draw_frame(self, frame: pd.DataFrame) -> None:
        from ..local.tutorial import plot_lag

        figure = plot_lag(frame, "Lag per consumer group during the burst")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        self.lag_chart.value = buffer.getvalue()

    # ---- view -----------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """The orders this dashboard created, as the order-processor sees them."""
        orders = (self.view.get(order_id) for order_id in self.order.options)
        rows = [(o.order_id, o.customer_id, o.status.value, o.version, " → ".join(e.status.value for e in o.history))
                for o in orders if o is not None]
        return pd.DataFrame(rows, columns=["order_id", "customer", "status", "version", "history"])

    def enabled(self) -> dict[str, bool]:
        """Which action buttons are enabled for the selected order."""
        return {name: not button.disabled for name, button in self.buttons.items()}

    def _selected(self) -> None:
        """Another order chosen: the previous order's message no longer applies."""
        self._say("")
        self._refresh()

    def _refresh(self) -> None:
        order = self.view.get(self.order.value) if self.order.value else None
        allowed = allowed_next(order.status) if order and not self.stopped else frozenset()
        for name, button in self.buttons.items():
            button.disabled = ACTIONS[name] not in allowed
        if order is not None:
            state = f"Order {html.escape(order.order_id)}: <b>{order.status.value}</b> (version {order.version})"
        else:
            state = "No order selected: press <b>Create</b>"
        self.status.value = f"{state} &nbsp; <i>(stopped)</i>" if self.stopped else state
        self.table.value = self.frame().to_html(index=False)

    def _say(self, text: str, error: bool = False) -> None:
        self.last_message = text
        colour = "#b00020" if error else "#1b5e20"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""


def _burst_note(events: int, peak: int, drained: bool) -> str:
    """What the line beside the chart says once a burst is over."""
    if not drained:
        return f"{events} events: the groups did not catch up within 120 s (lag rose to {peak})."
    if peak == 0:
        return (f"{events} events: every group kept up and drained between two samples "
                f"({SAMPLE_EVERY:g} s apart); lag is back at 0.")
    return f"{events} events: lag rose to {peak} and drained back to 0."
