"""Settings read from the environment."""

from __future__ import annotations

import pytest

from order_system.config import Settings
from order_system.domain.errors import ConfigError


def test_defaults_point_at_the_local_broker() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert not settings.bootstrap_from_env
    assert (settings.topic, settings.partitions, settings.replication_factor) == ("order-events", 3, 1)
    assert settings.all_topics == ("order-events", "order-events-retry-0", "order-events-retry-1", "order-events-dlt",
                                   "order-state", "order-effects", "order-verdicts")


def test_environment_wins_and_security_options_pass_through() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1.example:9093,b2.example:9093",
        "ORDER_SYSTEM_PARTITIONS": "6",
        "ORDER_SYSTEM_REPLICATION_FACTOR": "3",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_HOME": "/opt/kafka",  # unrelated: must not leak into client options
    }
    settings = Settings.from_env(env)
    assert settings.bootstrap_from_env
    config = settings.client_config(**{"group.id": "g"})
    assert config.pop("logger").name == "order_system.kafka"
    assert config == {
        "bootstrap.servers": "b1.example:9093,b2.example:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "svc",
        "group.id": "g",
    }
    assert (settings.partitions, settings.replication_factor) == (6, 3)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [("ORDER_SYSTEM_PARTITIONS", "three", "not a whole number"), ("ORDER_SYSTEM_PARTITIONS", "0", "at least 1"),
     ("ORDER_SYSTEM_TOPIC", "  ", "blank")],
)
def test_bad_values_are_named(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)


def test_with_topic_derives_retry_and_dead_letter_names() -> None:
    settings = Settings().with_topic("t-1")
    assert settings.retry_topics == ("t-1-retry-0", "t-1-retry-1")
    assert settings.dead_letter_topic == "t-1-dlt"
