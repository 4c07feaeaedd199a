"""An ipywidgets dashboard: buttons that create and advance orders over a live table.

Every click goes through ``OrderCommands``, the same path as the REST API: the event is
published to Kafka and the table shows the order-processor's view once it has processed it.
A button whose transition the state machine forbids for the selected order is disabled.
"""

from __future__ import annotations

import ipywidgets as widgets
import pandas as pd

from .commands import OrderCommands
from .errors import OrderSystemError
from .events import OrderStatus
from .groups import OrderProcessor
from .producer import OrderProducer
from .state_machine import allowed_next

ACTIONS: dict[str, OrderStatus] = {
    "Pay": OrderStatus.PAID,
    "Ship": OrderStatus.SHIPPED,
    "Deliver": OrderStatus.DELIVERED,
    "Cancel": OrderStatus.CANCELLED,
}


class OrderDashboard:
    """``OrderDashboard(producer, processor).widget`` shows it; ``click("Pay")`` presses a button."""

    def __init__(self, producer: OrderProducer, processor: OrderProcessor, customer_id: str = "customer-123",
                 view_timeout: float = 10.0) -> None:
        self.processor = processor
        self.commands = OrderCommands(producer, processor, view_timeout=view_timeout)
        self.customer = widgets.Text(value=customer_id, description="Customer")
        self.create_button = widgets.Button(description="Create", button_style="primary", icon="plus")
        self.order = widgets.Dropdown(options=[], description="Order")
        self.buttons = {name: widgets.Button(description=name) for name in ACTIONS}
        self.message = widgets.HTML()
        self.message.add_class("order-status")  # the browser test reads the status here
        self.last_message = ""
        self.table = widgets.HTML()
        self.create_button.on_click(lambda _: self._create())
        for name, button in self.buttons.items():
            button.on_click(lambda _, n=name: self._advance(n))
        self.order.observe(lambda _: self._refresh(), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.customer, self.create_button]),
            widgets.HBox([self.order, *self.buttons.values()]),
            self.message,
            self.table,
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
        try:
            event, delivery = self.commands.create(self.customer.value.strip() or "customer-123")
        except (OrderSystemError, ValueError) as exc:
            self._say(f"Could not create the order: {exc}", error=True)
            return
        self.commands.wait_until_processed(event.order_id)
        self.order.options = [*self.order.options, event.order_id]
        self.order.value = event.order_id
        self._say(f"Created order {event.order_id} (partition {delivery.partition}, offset {delivery.offset})")

    def _advance(self, name: str) -> None:
        order_id = self.order.value
        if not order_id:
            self._say("Create an order first", error=True)
            return
        try:
            event, delivery = self.commands.advance(order_id, self.customer_value(order_id), ACTIONS[name])
            self.commands.wait_until_processed(order_id)
        except OrderSystemError as exc:
            self._say(str(exc), error=True)
            return
        self._refresh()
        self._say(f"{name}: order {order_id} is now {event.status.value} (v{event.version}, "
                  f"partition {delivery.partition}, offset {delivery.offset})")

    def customer_value(self, order_id: str) -> str:
        order = self.processor.get(order_id)
        return order.customer_id if order else self.customer.value

    # ---- view -----------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """The orders this dashboard created, as the order-processor sees them."""
        rows = []
        for order_id in self.order.options:
            order = self.processor.get(order_id)
            if order is not None:
                rows.append({"order_id": order_id, "customer": order.customer_id, "status": order.status.value,
                             "version": order.version,
                             "history": " → ".join(e.status.value for e in order.history)})
        return pd.DataFrame(rows, columns=["order_id", "customer", "status", "version", "history"])

    def enabled(self) -> dict[str, bool]:
        """Which action buttons are enabled for the selected order."""
        return {name: not button.disabled for name, button in self.buttons.items()}

    def _refresh(self) -> None:
        order = self.processor.get(self.order.value) if self.order.value else None
        allowed = allowed_next(order.status) if order else frozenset()
        for name, button in self.buttons.items():
            button.disabled = ACTIONS[name] not in allowed
        self.table.value = self.frame().to_html(index=False)

    def _say(self, text: str, error: bool = False) -> None:
        self.last_message = text
        colour = "#b00020" if error else "#1b5e20"
        self.message.value = f'<span style="color:{colour}">{text}</span>'
