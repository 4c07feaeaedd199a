"""Where a command's time goes, stage by stage, for the ``Server-Timing`` header of its answer.

A command waits in turn for its order's lock (``lock``), the view (``view``; for an order the view
does not hold yet, also for the order-processor: ``processed``), the broker's acknowledgement
(``publish``), the order-processor's verdict (``verdict``) and the view showing the new version
(``shown``). ``recording()`` collects the stages of the code it wraps (the HTTP middleware wraps
each request); ``stage(name)`` times one. Outside a recording, ``stage`` only runs its block.

    with recording() as stages:
        with stage("publish"):
            ...
    server_timing(stages)   # 'publish;dur=12.3'
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stages: ContextVar[dict[str, float] | None] = ContextVar("order_system_stages", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the stages timed inside (in this context and the threads it hands work to)."""
    stages: dict[str, float] = {}
    token = _stages.set(stages)
    try:
        yield stages
    finally:
        _stages.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the time spent in the block to the stage ``name`` of the current recording, if any."""
    stages, began = _stages.get(), time.monotonic()
    try:
        yield
    finally:
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + time.monotonic() - began


def server_timing(stages: dict[str, float]) -> str:
    """The ``Server-Timing`` header's value: each stage's duration in milliseconds."""
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in stages.items())
