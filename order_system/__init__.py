"""order_system: an event-driven order system on Apache Kafka.

    from order_system import Settings, OrderProducer, standard_groups, runner_for, run_groups

Everything a script or notebook needs is importable from here; nothing connects to Kafka at
import time, and nothing is imported until it is first used: ``import order_system.domain``
loads no Kafka client, no pandas and no Prometheus (the names below are looked up lazily).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

# public name -> the module that defines it (relative to this package)
_WHERE = {
    "Settings": ".config",
    **dict.fromkeys(("BrokerError", "CommandRejected", "ConfigError", "IdempotencyKeyReused", "InvalidEvent",
                     "InvalidTransition", "NotYourOrder", "OrderSystemError", "PublishError", "StillProcessing",
                     "TopicError", "UnknownOrder"), ".domain.errors"),
    **dict.fromkeys(("OrderEvent", "OrderStatus", "new_order_id"), ".domain.events"),
    **dict.fromkeys(("TRANSITIONS", "Order", "check_transition", "rebuild", "rebuild_order", "transition_table"),
                    ".domain.state_machine"),
    **dict.fromkeys(("Delivery", "OrderProducer"), ".kafka.producer"),
    **dict.fromkeys(("ConsumerRunner", "Received", "run_groups"), ".kafka.consumer"),
    "TransactionalRunner": ".kafka.transactions",
    **dict.fromkeys(("InPlaceRetry", "RetryTopics"), ".kafka.retry"),
    **dict.fromkeys(("DeadLetters", "read_dead_letters", "replay"), ".kafka.dead_letters"),
    **dict.fromkeys(("LagWatch", "consumer_lag", "wait_for_zero_lag"), ".kafka.lag"),
    **dict.fromkeys(("choose_replication", "create_topics", "delete_topics"), ".kafka.topics"),
    **dict.fromkeys(("read_effects", "read_order_state"), ".kafka.changelog_reader"),
    "partition_for": ".kafka.partitioner",
    "Outbox": ".state.outbox",
    "OrderView": ".state.view",
    "OrderCommands": ".services.commands",
    "AnalyticsService": ".services.analytics",
    "NotificationService": ".services.notifications",
    "OrderProcessor": ".services.processor",
    **dict.fromkeys(("runner_for", "standard_groups"), ".bootstrap"),
    **dict.fromkeys(("plan_lifecycles", "publish_lifecycles"), ".local.demo"),
    **dict.fromkeys(("LocalBroker", "ensure_broker"), ".local.broker"),
    **dict.fromkeys(("LocalCluster", "cluster_port", "partition_table"), ".local.cluster"),
    **dict.fromkeys(("SteadyPublisher", "arrival_table"), ".local.failover"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'order_system' has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The public names, and the subpackages imported so far."""
    return sorted(set(__all__) | {name for name, value in globals().items() if isinstance(value, ModuleType)})
