"""What a consumer does when a record fails: retry it, then dead-letter it.

Two styles, chosen per group:

- ``InPlaceRetry`` re-runs the handler inside the consumer loop with a growing back-off. The
  partition waits meanwhile, and that is the point: ``order-processor`` must not let a
  retried PAID leave the partition, or the order's SHIPPED would overtake it and be rejected.
- ``RetryTopics`` forwards the failed record to ``<topic>-retry-0``, then ``-retry-1``, each
  consumed after a growing delay, and finally to the dead-letter topic. The main partition
  moves on at once, so one bad record does not hold up others; right for groups where the
  order between events does not matter (notifications, analytics). A delay that is not yet
  due pauses only that retry partition; every other partition keeps flowing.

Records that can never succeed go straight to the dead-letter topic with the reason in a
header: anything that is not a valid event (``InvalidEvent``: not JSON, too large, wrong
schema, out-of-range number, unknown status, empty value, no key, a version conflict or gap)
and a forbidden transition. Only a handler's other failures are retried.

The retry headers below are trusted only on the retry topics, and bounded there: a record
is never put off for longer than the longest retry delay, whatever its headers say.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from ..config import Settings
from ..domain.errors import InvalidEvent, InvalidTransition, PublishError
from ..domain.events import OrderEvent
from .dead_letters import DeadLetters
from .records import Deferred, Handler, Received, Runner

# Headers a retry-topic record carries besides the original record's own: where it was first
# written (``Received.place``), the error that sent it there (error-class, error-message), and these.
RETRY_GROUP = "retry-group"
RETRY_ATTEMPT = "retry-attempt"  # the attempt this record is waiting for: 2, 3 ...
RETRY_DUE = "retry-due-ms"  # epoch milliseconds before which the record must not be retried
MAX_DEFERRED_KEPT = 10_000  # records remembered as put off (see RetryTopics._due)


def never_succeeds(error: Exception) -> str | None:
    """The dead-letter reason for an error that retrying cannot fix, else None (retry it)."""
    if isinstance(error, InvalidTransition):
        return "invalid-transition"
    if isinstance(error, InvalidEvent):
        return error.reason
    return None


class FailurePolicy:
    """How a runner handles records: the happy path (``run``), failures and poison. Both styles
    share the rest: poison goes straight to the dead-letter topic."""

    dead_letters: DeadLetters | None = None

    def run(self, runner: Runner, received: Received, event: OrderEvent, handler: Handler) -> None:
        raise NotImplementedError

    def _dead_letters(self, runner: Runner) -> DeadLetters:
        if self.dead_letters is None:
            self.dead_letters = DeadLetters(runner.settings)
        return self.dead_letters

    def extra_topics(self, settings: Settings) -> Sequence[str]:
        return ()

    def accepts(self, runner: Runner, received: Received) -> bool:
        return True

    def reject(self, runner: Runner, received: Received, error: Exception, attempts: int = 1) -> None:
        reason = never_succeeds(error) or "handler-error"
        self._dead_letters(runner).send(received, error, group=runner.group_id, attempts=attempts, reason=reason)
        runner.count_dead_letter()
        runner.log.error("[%s] dead-lettered partition %d offset %d after %d attempt(s) (%s): %s",
                         runner.name, received.partition, received.offset, attempts, reason, error)

    def reject_unexpected(self, runner: Runner, received: Received, error: Exception) -> None:
        """Dead-letter a record whose disposal failed in a way nobody foresaw (reason
        ``internal-error``), rather than retry it forever; without its headers if they are what
        breaks. Raises ``PublishError`` when the dead-letter topic does not take it: then the
        runner tries the record again."""
        failure = InvalidEvent(f"internal error: {type(error).__name__}: {error}"[:1000], "internal-error")
        try:
            self.reject(runner, received, failure)
        except PublishError:
            raise
        except Exception:  # the record's own headers may be what breaks: dead-letter it without them
            try:
                self.reject(runner, replace(received, headers={}), failure)
            except Exception as exc:  # then it is the dead-letter topic's side: try the record again
                raise PublishError(f"could not dead-letter: {type(exc).__name__}: {exc}") from exc

    def _succeeded(self, runner: Runner, result: str | None, attempt: int) -> None:
        runner.count_handled()
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        runner.record_log.handled(result or f"[{runner.name}] handled", suffix)


class InPlaceRetry(FailurePolicy):
    """Retry inside the loop: ``attempts`` tries in all, waiting ``backoff * factor**n`` between."""

    def __init__(self, attempts: int = 3, backoff: float = 0.2, factor: float = 2.0) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts, self.backoff, self.factor = attempts, backoff, factor

    def run(self, runner: Runner, received: Received, event: OrderEvent, handler: Handler) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self._succeeded(runner, handler(event, received), attempt)
                return
            except Exception as exc:
                if never_succeeds(exc) or attempt == self.attempts:
                    self.reject(runner, received, exc, attempts=attempt)
                    return
                delay = self.backoff * self.factor ** (attempt - 1)
                runner.count_retry()
                runner.log.warning("[%s] attempt %d of %d failed for order %s: %s; retrying in %.2fs",
                                   runner.name, attempt, self.attempts, event.order_id, exc, delay)
                runner.sleep(delay)


class RetryTopics(FailurePolicy):
    """Retry through ``<topic>-retry-0`` and ``-retry-1``, waiting ``delays[n]`` before each."""

    def __init__(self, delays: Sequence[float] = (1.0, 2.0)) -> None:
        if not delays:
            raise ValueError("give at least one retry delay")
        self.delays = tuple(delays)
        self.attempts = len(self.delays) + 1
        self._put_off: dict[tuple[str, int, int], float] = {}  # record -> when it was first put off

    def extra_topics(self, settings: Settings) -> Sequence[str]:
        topics = settings.retry_topics
        if len(self.delays) > len(topics):
            raise ValueError(f"{len(self.delays)} retry delays but only {len(topics)} retry topics")
        return topics[: len(self.delays)]

    def accepts(self, runner: Runner, received: Received) -> bool:
        if received.topic not in runner.settings.retry_topics:
            return True  # retry headers on the main topic (say, a replayed record) mean nothing
        group = received.header(RETRY_GROUP)
        return group is None or group == runner.group_id

    def _due(self, received: Received) -> float:
        """When a retry record may run: its header, but never later than the longest delay after
        it was first put off here (a forged or skewed header cannot hold the partition)."""
        if len(self._put_off) > MAX_DEFERRED_KEPT:
            self._put_off.clear()
        first = self._put_off.setdefault((received.topic, received.partition, received.offset), time.time())
        return min(_bounded(received.header(RETRY_DUE), 0, 2**53, default=0) / 1000, first + max(self.delays))

    def run(self, runner: Runner, received: Received, event: OrderEvent, handler: Handler) -> None:
        attempt = 1  # on the main topic; on a retry topic, as its header says (bounded)
        if received.topic in runner.settings.retry_topics:
            attempt = _bounded(received.header(RETRY_ATTEMPT), 2, self.attempts, default=self.attempts)
            due = self._due(received)
            if due > time.time():
                raise Deferred(due)
            self._put_off.pop((received.topic, received.partition, received.offset), None)
        try:
            self._succeeded(runner, handler(event, received), attempt)
        except Exception as exc:
            if never_succeeds(exc) or attempt >= self.attempts:
                self.reject(runner, received, exc, attempts=attempt)
            else:
                self._forward(runner, received, exc, attempt)

    def _forward(self, runner: Runner, received: Received, error: Exception, attempt: int) -> None:
        topic = runner.settings.retry_topics[attempt - 1]
        delay = self.delays[attempt - 1]
        here = {name: value.encode() for name, value in received.place().items()}
        if received.topic in (runner.settings.topic, *runner.settings.retry_topics):
            headers = {**here, **received.headers}  # a replayed event or a retry keeps where it was first written
        else:  # another input (order-verdicts): its record may carry its input's headers; it came from here
            headers = {**received.headers, **here}
        headers.update({
            RETRY_GROUP: runner.group_id.encode(),
            RETRY_ATTEMPT: str(attempt + 1).encode(),
            RETRY_DUE: str(int((time.time() + delay) * 1000)).encode(),
            "error-class": type(error).__name__.encode(),
            "error-message": str(error).encode()[:1000],
        })
        self._dead_letters(runner).forward(topic, received, list(headers.items()))
        runner.count_retry()
        runner.log.warning("[%s] attempt %d of %d failed for key %s: %s; retry in %.1fs via %s",
                           runner.name, attempt, self.attempts, received.key, error, delay, topic)


def _bounded(text: str | None, low: int, high: int, default: int) -> int:
    """``text`` as an int within ``low``..``high``; ``default`` when it is missing or not a number."""
    try:
        return min(max(int(text), low), high) if text is not None and len(text) <= 20 else default
    except ValueError:
        return default


def policy_for(style: str) -> FailurePolicy:
    """``"in-place"`` or ``"topics"``, as a group's ``retry_style`` names it."""
    if style == "in-place":
        return InPlaceRetry()
    if style == "topics":
        return RetryTopics()
    raise ValueError(f"unknown retry style {style!r}; use 'in-place' or 'topics'")
