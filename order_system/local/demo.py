"""Demo traffic: whole order lifecycles, interleaved the way real traffic arrives.

``plan_lifecycles`` is pure (events only); ``publish_lifecycles`` sends a plan through a
producer. The notebooks, ``order-system produce-demo``, the benchmarks and the tests use them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Future

from ..domain.events import OrderEvent, OrderStatus, new_order_id
from ..kafka.producer import Delivery, OrderProducer

_HAPPY = (OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def plan_lifecycles(orders: int, *, interleave: bool = True, seed: int | None = None,
                    cancel_every: int = 5) -> list[OrderEvent]:
    """The events of ``orders`` full lifecycles of ten customers' orders, each order's events in version order.

    Every ``cancel_every``-th order is cancelled after CREATED or PAID instead of delivered.
    With ``interleave``, events of different orders are shuffled together (a fair random
    merge), the way real traffic arrives.
    """
    rng = random.Random(seed)
    lives: list[list[OrderEvent]] = []
    for n in range(orders):
        order_id = new_order_id() if seed is None else f"{rng.getrandbits(32):08x}"
        customer = f"customer-{n % 10}"
        statuses = list(_HAPPY)
        if cancel_every and n % cancel_every == cancel_every - 1:
            statuses = statuses[: rng.choice((1, 2))] + [OrderStatus.CANCELLED]
        lives.append([OrderEvent.for_status(s, order_id, customer, v) for v, s in enumerate(statuses, 1)])
    if not interleave:
        return [event for life in lives for event in life]
    merged: list[OrderEvent] = []
    queues = [list(reversed(life)) for life in lives]
    while queues:
        pick = rng.randrange(len(queues))
        merged.append(queues[pick].pop())
        if not queues[pick]:
            queues[pick] = queues[-1]
            queues.pop()
    return merged


def publish_lifecycles(producer: OrderProducer, orders: int, *, seed: int | None = None, keyed: bool = True,
                       progress: Callable[[int, int], None] | None = None) -> list[Future[Delivery]]:
    """Publish ``orders`` interleaved lifecycles (see ``plan_lifecycles``); returns the delivery futures.

    ``progress(done, total)`` is called after each event is handed to the producer.
    """
    events = plan_lifecycles(orders, seed=seed)
    futures = []
    for n, event in enumerate(events, 1):
        futures.append(producer.publish(event, keyed=keyed))
        if progress:
            progress(n, len(events))
    return futures
