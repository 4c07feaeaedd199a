"""notification-service reads order-verdicts on the real broker: it notifies once per accepted
verdict, never for a rejected, duplicate or aborted one, and its failures retry and dead-letter
the verdict itself (which ``replay`` sends back to order-verdicts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from confluent_kafka import Producer

from order_system.config import Settings
from order_system.domain.changelog import Outcome, Verdict
from order_system.domain.events import OrderEvent
from order_system.kafka.consumer import Received, run_groups
from order_system.kafka.dead_letters import read_dead_letters, replay
from order_system.kafka.reader import read_records
from order_system.kafka.lag import wait_for_zero_lag
from order_system.kafka.retry import RetryTopics
from order_system.bootstrap import runner_for
from order_system.services.notifications import NOTIFICATION_TEXT, NotificationService


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def accepted(event: OrderEvent, offset: int = 0) -> Record:
    return event.order_id.encode(), Verdict.of(Outcome.ACCEPTED, event, 0, offset).to_json(), []


def write_transaction(producer: Producer, topic: str, records: list[Record], commit: bool = True) -> None:
    producer.begin_transaction()
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    producer = Producer(settings.producer_config(**{"transactional.id": transactional_id}))
    producer.init_transactions(30)
    return producer


def message(event: OrderEvent) -> str:
    return f"to {event.customer_id}: {NOTIFICATION_TEXT[event.status].format(order_id=event.order_id)}"


def test_one_notification_per_committed_accepted_verdict_none_for_rejected_duplicate_or_aborted(
        topic_settings: Settings, unique: Callable[[str], str]) -> None:
    orders = [f"ord{n:05d}" for n in range(6)]
    created = [OrderEvent.created(o, f"c-{n}") for n, o in enumerate(orders)]
    paid = [OrderEvent.paid(e.order_id, e.customer_id, 2) for e in created[:4]]
    losers = [OrderEvent.cancelled(e.order_id, e.customer_id, 2)
              for e in created[:4]]  # the other side of each PAID: rejected
    ghosts = [OrderEvent.created(f"ghost{n:04d}", "c-ghost") for n in range(3)]  # only in the aborted transaction
    real = [OrderEvent.created(g.order_id, "c-real") for g in ghosts]  # same orders, committed afterwards
    first = [accepted(e) for e in created] + [
        (b"poison01", b"\xff not a verdict", []),  # garbage on the topic
        (b"someone1", accepted(paid[0])[1], []),  # an accepted verdict under another order's key
    ]
    second = [accepted(e) for e in paid] + [
        (e.order_id.encode(), Verdict.of(Outcome.REJECTED, e, 0, 9, "version-conflict", "v2 is taken").to_json(), [])
        for e in losers] + [
        (e.order_id.encode(), Verdict.of(Outcome.DUPLICATE, e, 0, 10).to_json(), []) for e in created[:2]]
    last = [accepted(e) for e in real]

    producer = transactional_producer(topic_settings, unique("verdict-writer"))
    write_transaction(producer, topic_settings.verdicts_topic, first)
    write_transaction(producer, topic_settings.verdicts_topic, [accepted(e) for e in ghosts] + [accepted(losers[0])],
                      commit=False)
    write_transaction(producer, topic_settings.verdicts_topic, second)
    write_transaction(producer, topic_settings.verdicts_topic, last)  # after the abort, on the ghosts' partitions

    notifications = NotificationService()
    runner = runner_for(notifications, topic_settings)
    assert runner.topics[0] == topic_settings.verdicts_topic
    committed = len(first) + len(second) + len(last)
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.processed + runner.skipped >= committed, timeout=60), (
            runner.processed, runner.skipped)
        # measured on order-topic_settings, whose partitions end in transaction markers: still 0 once all is read
        lag = wait_for_zero_lag(topic_settings, [runner.group_id], timeout=30)
    assert set(lag["topic"]) == {topic_settings.verdicts_topic}
    sent = Counter(zip(notifications.log()["order_id"], notifications.log()["message"]))
    expected = Counter((e.order_id, message(e)) for e in created + paid + real)
    assert sent == expected  # each accepted verdict once; no loser, duplicate or ghost
    assert runner.skipped == len(losers) + 2  # rejected and duplicate verdicts are for nobody
    assert runner.dead_lettered == 2 and runner.processed + runner.skipped == committed

    dead = read_dead_letters(topic_settings)
    assert sorted(dead["key"]) == ["poison01", "someone1"]
    assert set(dead["original-topic"]) == {topic_settings.verdicts_topic}  # recognisable as verdicts
    assert set(dead["group"]) == {"notification-service"}
    assert sorted(dead["reason"]) == ["bad-verdict", "key-mismatch"]


class Unreachable(NotificationService):
    """A notification channel that is down for ``down`` orders, failing every call for them."""

    def __init__(self, down: set[str]) -> None:
        super().__init__()
        self.down = down
        self.failed: Counter[str] = Counter()

    def notify(self, event: OrderEvent, received: Received | None = None) -> str:
        if event.order_id in self.down:
            self.failed[event.order_id] += 1
            raise RuntimeError("mail server unreachable")
        return super().notify(event, received)


def test_a_failed_notification_retries_and_dead_letters_the_verdict_and_replay_sends_it_back_to_verdicts(
        topic_settings: Settings, unique: Callable[[str], str]) -> None:
    flaky, fine = OrderEvent.created("flaky001", "c-1"), OrderEvent.created("fine0001", "c-2")
    # as if the processor had copied an input's headers: a replayed event's origin on order-events
    copied = [("original-topic", topic_settings.topic.encode()), ("original-partition", b"0"),
              ("original-offset", b"5")]
    producer = transactional_producer(topic_settings, unique("verdict-writer"))
    write_transaction(producer, topic_settings.verdicts_topic,
                      [(flaky.order_id.encode(), accepted(flaky)[1], copied), accepted(fine)])

    service = Unreachable({flaky.order_id})
    runner = runner_for(service, topic_settings, failure_policy=RetryTopics(delays=(0.2, 0.2)))
    with run_groups(runner):
        assert runner.wait_until(lambda: runner.dead_lettered == 1 and service.count() == 1, timeout=60)
    assert service.failed[flaky.order_id] == 3  # the verdict itself went through both retry topics
    assert list(service.log()["order_id"]) == [fine.order_id]

    dead = read_dead_letters(topic_settings)
    assert list(dead["key"]) == [flaky.order_id]
    assert list(dead["original-topic"]) == [topic_settings.verdicts_topic]  # not the copied order-events origin
    [kept] = read_records(topic_settings, topic_settings.dead_letter_topic)
    assert Verdict.from_json(kept.value()).event == flaky  # the verdict bytes, unchanged

    assert replay(topic_settings) == 1
    back = [m for m in read_records(topic_settings, topic_settings.verdicts_topic)
            if m.key() == flaky.order_id.encode()]
    assert len(back) == 2 and dict(back[-1].headers() or [])["replayed-from"].startswith(
        topic_settings.dead_letter_topic.encode())
    assert not [m for m in read_records(topic_settings, topic_settings.topic,
                                        timeout=2)]  # nothing went to order-events

    service.down.clear()  # the mail server is back: the replayed verdict notifies, once
    again = runner_for(service, topic_settings, failure_policy=RetryTopics(delays=(0.2, 0.2)))
    with run_groups(again):
        assert again.wait_until(lambda: again.processed >= 1 and service.count() == 2, timeout=60)
    assert Counter(service.log()["order_id"]) == Counter({flaky.order_id: 1, fine.order_id: 1})
