"""The cluster's layout, ports and settings, and the replication `topics create` chooses: no JVM needed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from order_system.local.broker import LocalBroker
from order_system.local.cluster import LocalCluster, cluster_port, kafka_uuid
from order_system.local.maven import cleaner_buffer_bytes, heap_bytes
from order_system.config import Settings
from order_system.domain.errors import BrokerError
from order_system.kafka.topics import replication_for


def test_port_scheme_follows_the_bootstrap_port(tmp_path: Path) -> None:
    cluster = LocalCluster(home=tmp_path, port=30000)
    assert [(n.node_id, n.port, n.controller_port) for n in cluster.nodes] == [
        (1, 30000, 30001), (2, 30002, 30003), (3, 30004, 30005)]
    assert cluster.bootstrap == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    assert cluster.settings(Settings()).bootstrap_servers == cluster.bootstrap


def test_every_node_is_controller_and_broker_with_replicated_internal_topics(tmp_path: Path) -> None:
    cluster = LocalCluster(home=tmp_path, port=30000)
    cluster._ensure_layout()
    props = cluster.node(2)._properties()
    assert props["node.id"] == "2" and props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30002,CONTROLLER://127.0.0.1:30003"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:30001,127.0.0.1:30003,127.0.0.1:30005"
    assert (props["offsets.topic.replication.factor"], props["transaction.state.log.replication.factor"],
            props["transaction.state.log.min.isr"], props["min.insync.replicas"]) == ("3", "3", "2", "2")
    assert (props["broker.session.timeout.ms"], props["controller.quorum.election.timeout.ms"]) == ("2000", "500")
    assert "controller.quorum.fetch.timeout.ms" not in props  # Kafka's 2 s: 1 s set off pre-votes against live leaders
    assert "broker.session.timeout.ms" not in LocalCluster(home=tmp_path, port=30000, tuned=False).node(1)._properties()
    voters = cluster.initial_controllers().split(",")
    assert [v.split(":")[0] for v in voters] == ["1@127.0.0.1", "2@127.0.0.1", "3@127.0.0.1"]
    assert cluster.node(1)._format_args()[:2] == ["--initial-controllers", cluster.initial_controllers()]
    assert LocalCluster(home=tmp_path, port=30000).initial_controllers() == cluster.initial_controllers()  # kept


def test_the_single_node_keeps_its_settings(tmp_path: Path) -> None:
    props = LocalBroker(home=tmp_path, port=30000)._properties()
    assert (props["node.id"], props["offsets.topic.replication.factor"]) == ("1", "1")
    assert "min.insync.replicas" not in props
    assert LocalBroker(home=tmp_path, port=30000)._format_args()[0] == "--standalone"


def test_cleaner_buffer_is_sized_with_the_heap(tmp_path: Path) -> None:
    assert heap_bytes("1g") == 1 << 30 and heap_bytes("256m") == 256 << 20
    assert cleaner_buffer_bytes("256m") == 32 << 20  # Kafka's default 128 MB did not fit a 256 MB heap
    assert cleaner_buffer_bytes("32m") == 8 << 20
    assert LocalBroker(home=tmp_path, heap="256m")._properties()["log.cleaner.dedupe.buffer.size"] == str(32 << 20)
    with pytest.raises(BrokerError, match="not like 512m"):
        heap_bytes("lots")


def test_cluster_port_beside_the_single_broker() -> None:
    assert cluster_port(Settings(bootstrap_servers="127.0.0.1:9092"), env={}) == 9192
    assert cluster_port(Settings(), env={"ORDER_SYSTEM_CLUSTER_PORT": "25092"}) == 25092
    with pytest.raises(BrokerError, match="ORDER_SYSTEM_CLUSTER_PORT"):
        cluster_port(Settings(), env={"ORDER_SYSTEM_CLUSTER_PORT": "99999"})


def test_a_cluster_has_three_nodes_at_least(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="at least 3 nodes"):
        LocalCluster(home=tmp_path, nodes=2)


def test_kafka_uuid_is_sixteen_bytes_in_url_safe_base64() -> None:
    ids = {kafka_uuid() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 and not i.startswith("-") for i in ids)


@pytest.mark.parametrize(("brokers", "factor", "min_isr"), [(1, 1, None), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_replication_follows_the_brokers_that_answer(brokers: int, factor: int, min_isr: int | None) -> None:
    chosen = replication_for(Settings(), brokers)
    assert (chosen.factor, chosen.min_insync, chosen.chosen) == (factor, min_isr, True)
    assert chosen.topic_config() == ({"min.insync.replicas": str(min_isr)} if min_isr else {})


def test_the_environment_overrides_the_choice() -> None:
    settings = Settings.from_env({"ORDER_SYSTEM_REPLICATION_FACTOR": "1"})
    chosen = replication_for(settings, 3)
    assert (chosen.factor, chosen.min_insync, chosen.chosen) == (1, None, False)
    assert "ORDER_SYSTEM_REPLICATION_FACTOR is set" in chosen.describe()
    settings = Settings.from_env({"ORDER_SYSTEM_REPLICATION_FACTOR": "3", "ORDER_SYSTEM_MIN_INSYNC_REPLICAS": "3"})
    assert replication_for(settings, 3).min_insync == 3
