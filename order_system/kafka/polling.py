"""Serving librdkafka's delivery callbacks for ``OrderProducer`` (``producer.py``).

librdkafka calls a record's ``on_delivery`` only from inside ``Producer.poll()`` (or ``flush()``).
So someone must poll while records are in flight, or no future ever resolves. ``ServesDeliveries``
does it in two places:

- a daemon thread that polls while anything is unresolved, so futures resolve even when the
  caller does nothing else;
- the publishing thread itself, while it is busy publishing: every ``POLL_EVERY`` publishes (or
  when its previous publish was more than ``BUSY`` ago) it calls ``poll(0)`` between its records,
  and the daemon thread stands aside meanwhile: one thread polling, not two taking turns.

A callback that publishes (``OrderedProducer`` sends an order's next event from the previous
one's callback) must not poll again from inside ``poll()``: a thread-local flag says whether this
thread is already serving.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

BUSY = 0.0005  # a publisher that published this recently (seconds) serves the delivery callbacks itself
POLL_EVERY = 16  # a busy publisher serves callbacks every so many publishes (poll() has a cost of its own)


class ServesDeliveries:
    """The polling half of ``OrderProducer``: it sets ``_producer``, ``_lock`` (a Condition over
    ``_unresolved`` and ``_closed``) and calls ``_start_serving`` once they exist."""

    _producer: Producer
    _lock: threading.Condition
    _unresolved: int
    _closed: bool

    def _start_serving(self) -> None:
        self._last_publish = 0.0  # time.monotonic() of the latest publish
        self._publishes = 0
        self._local = threading.local()  # .polling: this thread is inside poll() (serving callbacks)
        self._poller = threading.Thread(target=self._serve_callbacks, name="producer-callbacks", daemon=True)
        self._poller.start()

    def _serve_inline(self) -> None:
        """Serve the delivery callbacks that are due, in the publishing thread (not from a
        callback), every ``POLL_EVERY`` publishes or when the last one was a while ago."""
        now = time.monotonic()
        self._publishes += 1
        if self._publishes % POLL_EVERY and now - self._last_publish < BUSY:
            self._last_publish = now
            return
        self._last_publish = now
        if not getattr(self._local, "polling", False):
            self._local.polling = True
            try:
                self._producer.poll(0)
            finally:
                self._local.polling = False

    def _serve_callbacks(self) -> None:
        self._local.polling = True  # a publish from a callback run here must not poll again
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._unresolved > 0 or self._closed)
                if self._closed and self._unresolved == 0:
                    return
            self._between_polls()
            quiet = time.monotonic() - self._last_publish
            if quiet < BUSY:  # a publisher is busy and serves callbacks between its records
                time.sleep(BUSY - quiet)
                continue
            self._producer.poll(0.01)

    def _between_polls(self) -> None:
        """Work the callback thread does between two polls (``OrderedProducer`` hands librdkafka
        the records its callbacks could not, its queue being full)."""
