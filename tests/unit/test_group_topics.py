"""Which topic each group reads, as ``runner_for`` wires it: no broker (a runner connects on start)."""

from __future__ import annotations

from order_system.config import Settings
from order_system.kafka.records import decode_accepted
from order_system.services.analytics import AnalyticsService
from order_system.bootstrap import runner_for
from order_system.services.notifications import NotificationService


def test_notifications_read_the_verdicts_and_retry_through_the_main_topics_retry_topics() -> None:
    settings = Settings().with_topic("shop-events")
    runner = runner_for(NotificationService(), settings)
    assert runner.topics == ["shop-verdicts", "shop-events-retry-0", "shop-events-retry-1"]
    assert runner.decoder is decode_accepted
    assert settings.input_topic(runner.group_id) == "shop-verdicts"  # where its lag is measured


def test_analytics_reads_the_events_themselves() -> None:
    settings = Settings().with_topic("shop-events")
    runner = runner_for(AnalyticsService(), settings)
    assert runner.topics == ["shop-events", "shop-events-retry-0", "shop-events-retry-1"]
    assert runner.decoder != decode_accepted
    assert settings.input_topic(runner.group_id) == "shop-events"


def test_given_topics_and_decoder_win() -> None:
    settings = Settings().with_topic("shop-events")
    runner = runner_for(NotificationService(), settings, topics=["elsewhere"], decoder=lambda r: None)
    assert runner.topics == ["elsewhere"] and runner.decoder(None) is None  # type: ignore[arg-type]
