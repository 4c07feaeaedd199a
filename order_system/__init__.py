"""order_system: an event-driven order system on Apache Kafka.

    from order_system import Settings, OrderProducer, standard_groups, runner_for, run_groups

Everything a script or notebook needs is importable from here; nothing connects to Kafka
at import time.
"""

from .local.broker import LocalBroker, ensure_broker
from .local.cluster import LocalCluster, cluster_port, partition_table
from .services.commands import OrderCommands
from .config import Settings
from .kafka.consumer import ConsumerRunner, Received, run_groups
from .kafka.dead_letters import DeadLetters, read_dead_letters, replay
from .domain.errors import (
    BrokerError, CommandRejected, ConfigError, InvalidEvent, InvalidTransition, NotYourOrder, OrderSystemError, PublishError,
    StillProcessing, TopicError, UnknownOrder,
)
from .domain.events import OrderEvent, OrderStatus, new_order_id
from .local.failover import SteadyPublisher, arrival_table
from .services.groups import AnalyticsService, NotificationService, OrderProcessor, runner_for, standard_groups
from .kafka.lag import LagWatch, consumer_lag, wait_for_zero_lag
from .kafka.outbox import Outbox
from .kafka.producer import Delivery, OrderProducer, plan_lifecycles, publish_lifecycles
from .kafka.retry import InPlaceRetry, RetryTopics
from .domain.state_machine import TRANSITIONS, Order, check_transition, rebuild, rebuild_order, transition_table
from .kafka.topics import choose_replication, create_topics, delete_topics
from .kafka.transactions import TransactionalRunner
from .kafka.changelog_reader import read_effects, read_order_state
from .kafka.partitioner import partition_for
from .state.view import OrderView

__all__ = [
    "AnalyticsService", "BrokerError", "ConfigError", "ConsumerRunner", "DeadLetters", "Delivery", "InPlaceRetry",
    "InvalidEvent", "InvalidTransition", "LagWatch", "LocalBroker", "NotYourOrder", "NotificationService", "Order",
    "OrderCommands", "OrderEvent", "OrderProcessor", "OrderProducer", "OrderStatus", "OrderSystemError", "Outbox",
    "PublishError", "Received", "RetryTopics", "Settings", "StillProcessing", "TRANSITIONS", "TopicError",
    "UnknownOrder", "check_transition", "consumer_lag", "create_topics", "delete_topics", "ensure_broker",
    "new_order_id", "plan_lifecycles", "publish_lifecycles", "read_dead_letters", "rebuild", "rebuild_order",
    "replay", "run_groups", "runner_for", "standard_groups", "transition_table", "wait_for_zero_lag",
    "LocalCluster", "cluster_port", "partition_table", "SteadyPublisher", "arrival_table", "choose_replication",
    "TransactionalRunner", "read_effects", "read_order_state", "OrderView", "CommandRejected", "partition_for",
]
