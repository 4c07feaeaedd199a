"""Settings in one place, read from the environment with local defaults.

No Kafka client is created here: a ``Settings`` object only describes where and how to
connect, and the adapters build clients from it when they are used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .domain.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_KAFKA_LOG = logging.getLogger("order_system.kafka")
DEFAULT_TOPIC = "order-events"
# Every producer of the package hashes keys like Kafka's Java client (murmur2), so that an order
# keeps its partition whichever service, Java or Python, publishes its events.
PARTITIONER = "murmur2_random"
VERDICT_READERS = frozenset({"notification-service"})  # groups that read order-verdicts (Settings.input_topic)

# Environment variables of the form KAFKA_<SECURITY|SASL|SSL>_... are passed to every client
# as librdkafka options: KAFKA_SASL_USERNAME -> sasl.username, KAFKA_SECURITY_PROTOCOL ->
# security.protocol. Only these families are passed, so unrelated KAFKA_* variables are ignored.
_PASS_THROUGH_PREFIXES = ("KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; unset it or give e.g. {default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


# Options whose values are secrets: masked in repr() and wherever settings are shown or logged.
_SECRET_PARTS = ("password", "secret", "jaas", "token", "key.pem", "oauthbearer.config", "credential")
MASK = "***"


def masked(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every secret value (passwords, secrets, keys, JAAS) replaced by ``***``
    (for logs, reprs and errors)."""
    return {name: MASK if any(part in name.lower() for part in _SECRET_PARTS) else value
            for name, value in options.items()}


def client_options_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Security options for managed clusters, e.g. KAFKA_SASL_MECHANISM -> sasl.mechanism."""
    return {name[len("KAFKA_"):].lower().replace("_", "."): value
            for name, value in env.items() if name.startswith(_PASS_THROUGH_PREFIXES)}


def _time_zone(env: Mapping[str, str]) -> str:
    """ORDER_SYSTEM_LOCAL_TIMEZONE: the IANA zone of zone-less timestamps (Java LocalDateTime), UTC by default."""
    name = (env.get("ORDER_SYSTEM_LOCAL_TIMEZONE") or "UTC").strip()
    try:
        if len(name) > 64:
            raise ValueError(name)
        ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise ConfigError(
            f"ORDER_SYSTEM_LOCAL_TIMEZONE={name[:64]!r} is not a time zone; give e.g. UTC or Europe/Berlin") from None
    return name


def default_home() -> Path:
    """Where the local broker keeps its jars, data and logs (ORDER_SYSTEM_HOME overrides)."""
    return Path(os.environ.get("ORDER_SYSTEM_HOME") or Path.home() / ".cache" / "order-system")


@dataclass(frozen=True, repr=False)
class Settings:
    """Where the broker is and what the topics are called (secret options are masked in repr)."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic: str = DEFAULT_TOPIC
    partitions: int = 3
    replication_factor: int = 1
    client_options: Mapping[str, str] = field(default_factory=dict)
    bootstrap_from_env: bool = False
    # False: `topics create` chooses replication from the brokers that answer (3 and min ISR 2 on a cluster)
    replication_from_env: bool = False
    min_insync_replicas: int | None = None
    local_timezone: str = "UTC"  # the zone of zone-less timestamps from Java services (see spring_compat)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        bootstrap = (env.get("KAFKA_BOOTSTRAP_SERVERS") or "").strip()
        topic = (env.get("ORDER_SYSTEM_TOPIC") or DEFAULT_TOPIC).strip()
        if not topic:
            raise ConfigError("ORDER_SYSTEM_TOPIC is blank; unset it to use 'order-events'")
        return cls(
            bootstrap_servers=bootstrap or DEFAULT_BOOTSTRAP,
            topic=topic,
            partitions=_int(env, "ORDER_SYSTEM_PARTITIONS", 3),
            replication_factor=_int(env, "ORDER_SYSTEM_REPLICATION_FACTOR", 1),
            replication_from_env=bool((env.get("ORDER_SYSTEM_REPLICATION_FACTOR") or "").strip()),
            min_insync_replicas=_int(env, "ORDER_SYSTEM_MIN_INSYNC_REPLICAS", 0) or None,
            client_options=client_options_from_env(env),
            bootstrap_from_env=bool(bootstrap),
            local_timezone=_time_zone(env),
        )

    def __repr__(self) -> str:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["client_options"] = masked(self.client_options)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in fields.items())})"

    def with_topic(self, topic: str) -> Settings:
        """The same settings for another main topic (tests use one topic each)."""
        return replace(self, topic=topic)

    @property
    def retry_topics(self) -> tuple[str, str]:
        return (f"{self.topic}-retry-0", f"{self.topic}-retry-1")

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}-dlt"

    def _derived(self, role: str) -> str:
        """``order-events`` -> ``order-<role>``; any other main topic ``t`` -> ``t-<role>``."""
        return f"{self.topic.removesuffix('-events')}-{role}"

    @property
    def state_topic(self) -> str:
        """The order-processor's changelog (compacted): each order's latest state."""
        return self._derived("state")

    @property
    def effects_topic(self) -> str:
        """The order-processor's side effects, one record each."""
        return self._derived("effects")

    @property
    def verdicts_topic(self) -> str:
        """The order-processor's verdict on each input record (accepted, duplicate, rejected)."""
        return self._derived("verdicts")

    def input_topic(self, group_id: str) -> str:
        """The topic a consumer group of the tutorial reads: ``notification-service`` the verdicts
        (it notifies only for what the processor accepted), every other group the events."""
        return self.verdicts_topic if group_id in VERDICT_READERS else self.topic

    @property
    def all_topics(self) -> tuple[str, ...]:
        """Every topic of the system: the events, their retry and dead-letter topics, and the
        order-processor's state, effects and verdicts."""
        return (self.topic, *self.retry_topics, self.dead_letter_topic, self.state_topic, self.effects_topic,
                self.verdicts_topic)

    @property
    def processor_topics(self) -> tuple[str, str, str]:
        """The order-processor's output topics, co-partitioned with the events topic."""
        return (self.state_topic, self.effects_topic, self.verdicts_topic)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka configuration: bootstrap, security pass-through, then ``extra``."""
        # librdkafka's own log lines go to Python logging instead of straight to stderr
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "logger": _KAFKA_LOG}
        config.update(self.client_options)
        config.update(extra)
        return config

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """``client_config`` for a producer: keys are partitioned as Kafka's Java client does
        (murmur2); ``extra`` may still name another partitioner, for demonstrations."""
        return self.client_config(**{"partitioner": PARTITIONER, **extra})
