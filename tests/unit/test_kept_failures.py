"""A failure the runner keeps does not keep the frames (and so the batch) it was raised through."""

from __future__ import annotations

import gc
import weakref

from order_system.kafka.records import without_frames as _without_frames


class Batch:
    """Stands for the records a failing call had in its frame."""


def failing(batch: Batch) -> None:
    try:
        raise KeyError("inner")
    except KeyError as inner:
        raise ValueError("outer") from inner


def test_a_kept_failure_lets_its_batch_go() -> None:
    batch = Batch()
    gone = weakref.ref(batch)
    try:
        failing(batch)
    except ValueError as exc:
        kept = _without_frames(exc)
    del batch
    gc.collect()
    assert gone() is None, "the kept exception still holds the frame with the batch"
    assert kept.__traceback__ is None and kept.__cause__ is not None and kept.__cause__.__traceback__ is None
    assert str(kept) == "outer" and str(kept.__cause__) == "'inner'"
