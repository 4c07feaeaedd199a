"""Three KRaft nodes on this machine: replication, leader election and failover you can watch.

Each node is one JVM that is both a controller and a broker (``process.roles=broker,controller``),
like the single node, so three processes give a controller quorum of three and three brokers.
A separate quorum would need three more JVMs on a 2-core machine, for nothing a learner can see.
The quorum is formatted as a dynamic (KIP-853) quorum with StorageTool ``--initial-controllers``,
the same kind of quorum ``--standalone`` gives the single node, so ``controller.quorum.bootstrap.servers``
is used everywhere and no static ``controller.quorum.voters`` list is needed.

Port scheme, from the bootstrap port P: node n (1, 2, 3) listens for clients on P + 2(n - 1) and
for the controller quorum on P + 2(n - 1) + 1. Node 1 uses the single node's two ports, so a
single node and a cluster cannot share a base port. Files live in ``<home>/cluster-<P>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .broker import LocalBroker, Say, kafka_uuid, parse_bootstrap, port_open, quiet, send_signal
from ..config import Settings, default_home
from ..domain.errors import BrokerError
from ..kafka.topics import admin_client

if TYPE_CHECKING:
    import pandas as pd

NODES = 3
NODE_HEAP = "384m"  # three nodes plus clients on a 2-core, 24 GB machine
# A SIGKILLed broker sends nothing: the controller fences it only when its session expires
# (Kafka's default 9 s, about 11 s until clients see a new leader). A 500 ms heartbeat and a
# 2 s session bring that to about 2.5 s. When the node killed was also the active controller,
# the other two first elect a new one: 2 s without a fetch from the leader (Kafka's default,
# kept), then a vote, 0.5 s here instead of 1 s. A 1 s fetch timeout was tried and dropped: a
# follower's fetch waits up to 500 ms at the leader, so on two busy cores a slow answer started
# a pre-vote against a live leader (2 in 10 failover runs), and once a new epoch instead, which
# held the coordinators still for 8 s (KIP-1236 puts the floor at twice that 500 ms).
FAILOVER_TUNING = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500",
                   "controller.quorum.election.timeout.ms": "500"}


def cluster_port(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Node 1's port for a cluster beside the configured single broker (notebook 08, cluster tests):
    ``ORDER_SYSTEM_CLUSTER_PORT``, else the bootstrap port + 100 (9192 beside 9092)."""
    env = os.environ if env is None else env
    raw = (env.get("ORDER_SYSTEM_CLUSTER_PORT") or "").strip()
    if raw:
        if not raw.isdigit() or not 1024 <= int(raw) <= 65535 - 2 * NODES:
            raise BrokerError(f"ORDER_SYSTEM_CLUSTER_PORT={raw!r} is not a port between 1024 and {65535 - 2 * NODES}")
        return int(raw)
    return parse_bootstrap(settings.bootstrap_servers)[1] + 100


class ClusterNode(LocalBroker):
    """One node of a ``LocalCluster``: LocalBroker's launcher with the cluster's settings."""

    def __init__(self, cluster: LocalCluster, node_id: int) -> None:
        super().__init__(home=cluster.home, host=cluster.host, port=cluster.port + 2 * (node_id - 1),
                         heap=cluster.heap, java=cluster.java, mvn=cluster.mvn,
                         state_dir=cluster.state_dir / f"node-{node_id}")
        self.node_id = node_id
        self.cluster = cluster

    def _properties(self) -> dict[str, str]:
        controllers = ",".join(f"{self.host}:{node.controller_port}" for node in self.cluster.nodes)
        return {
            **super()._properties(),
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": controllers,
            "default.replication.factor": "3",
            "min.insync.replicas": "2",  # also the internal topics' (consumer offsets, share state)
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            **(FAILOVER_TUNING if self.cluster.tuned else {}),
        }

    def _format_args(self) -> list[str]:
        cluster_id = self.cluster._ensure_layout()  # first: it records the directory ids the quorum list names
        return ["--initial-controllers", self.cluster.initial_controllers(), "-t", cluster_id]


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``broker status`` shows it."""

    node_id: int
    pid: int | None
    port: int
    controller_port: int
    alive: bool
    leads: int | None  # partitions it leads; None when no node answers

    def row(self) -> dict[str, Any]:
        return {"node": self.node_id, "pid": self.pid or "-", "role": "broker+controller", "port": self.port,
                "controller port": self.controller_port, "alive": "yes" if self.alive else "no",
                "leads": "?" if self.leads is None else self.leads}


class LocalCluster:
    """Start, stop, kill and inspect a cluster of KRaft nodes on 127.0.0.1 (see the module doc)."""

    def __init__(self, home: Path | None = None, host: str = "127.0.0.1", port: int = 9092, nodes: int = NODES,
                 heap: str = NODE_HEAP, java: str = "java", mvn: str = "mvn", tuned: bool = True) -> None:
        if nodes < 3:
            raise BrokerError(f"a cluster has at least 3 nodes (a quorum that survives one loss), not {nodes}")
        self.home = Path(home) if home else default_home()
        self.host, self.port, self.heap, self.java, self.mvn, self.tuned = host, port, heap, java, mvn, tuned
        self.state_dir = self.home / f"cluster-{port}"
        self.layout_file = self.state_dir / "cluster.json"
        recorded = self._layout().get("nodes")
        self.nodes = [ClusterNode(self, n) for n in range(1, int(recorded or nodes) + 1)]

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> LocalCluster:
        return cls(port=LocalBroker.for_settings(settings).port, **kwargs)  # refuses an address off this machine

    @property
    def bootstrap(self) -> str:
        """The bootstrap list clients should use: every node, so any one of them can be down."""
        return ",".join(node.bootstrap for node in self.nodes)

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (or the environment's settings) pointed at this cluster."""
        return replace(base or Settings.from_env(), bootstrap_servers=self.bootstrap, bootstrap_from_env=True)

    def node(self, node_id: int) -> ClusterNode:
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"there is no node {node_id}; the cluster at {self.port} has nodes 1 to "
                              f"{len(self.nodes)}")
        return self.nodes[node_id - 1]

    def exists(self) -> bool:
        """Whether a cluster was set up at this port (its nodes may be stopped)."""
        return self.layout_file.exists()

    def _layout(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.layout_file.read_text()))
        except (OSError, ValueError):
            return {}

    def initial_controllers(self) -> str:
        """StorageTool's ``--initial-controllers``: id@host:port:directory-id for every node."""
        ids = self._layout()["directory_ids"]
        return ",".join(f"{n.node_id}@{self.host}:{n.controller_port}:{ids[str(n.node_id)]}" for n in self.nodes)

    def _ensure_layout(self) -> str:
        """The cluster id, recorded with each node's metadata directory id the first time."""
        layout = self._layout()
        if not layout:
            layout = {"cluster_id": kafka_uuid(), "nodes": len(self.nodes), "port": self.port,
                      "directory_ids": {str(n.node_id): kafka_uuid() for n in self.nodes}}
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.layout_file.write_text(json.dumps(layout, indent=1))
        return str(layout["cluster_id"])

    # ---- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 120.0, say: Say = quiet) -> str:
        """Start every node that is not running and wait until all answer; ``"started"`` or ``"reused"``."""
        return self._start(self.nodes, timeout, say)

    def start_node(self, node_id: int, timeout: float = 120.0, say: Say = quiet) -> str:
        return self._start([self.node(node_id)], timeout, say)

    def _start(self, nodes: list[ClusterNode], timeout: float, say: Say) -> str:
        single = LocalBroker(home=self.home, host=self.host, port=self.port)
        if single.running_pid() is not None:
            raise BrokerError(f"a single broker started by order-system runs at {single.bootstrap}; stop it first "
                              f"(`order-system broker stop`) or start the cluster at another port")
        launched: list[tuple[ClusterNode, int]] = []
        started = False
        for node in nodes:
            pid = node.running_pid()
            if pid is None:
                for port in (node.port, node.controller_port):
                    if port_open(self.host, port):
                        raise BrokerError(f"port {port} (node {node.node_id}) is taken by another program; stop it "
                                          "or choose another port with KAFKA_BOOTSTRAP_SERVERS")
                pid = node._launch(say)
                say(f"Starting node {node.node_id} (pid {pid}) at {node.bootstrap}, "
                    f"controller port {node.controller_port}")
                started = True
            launched.append((node, pid))
        for node, pid in launched:  # every node has been launched: a quorum needs a majority up at once
            node._wait_ready(pid, timeout)
        say(f"Kafka cluster is ready; bootstrap list: {self.bootstrap}")
        return "started" if started else "reused"

    def stop(self, timeout: float = 60.0) -> str:
        """Stop every node (SIGTERM to all at once, so the quorum stays up while they shut down)."""
        running = [(node, pid) for node in self.nodes if (pid := node.running_pid()) is not None]
        for _, pid in running:
            send_signal(pid, signal.SIGTERM)
        lines = []
        for node, pid in running:
            how = node._terminate(pid, grace=timeout)  # SIGTERM again is harmless; SIGKILL after the grace
            lines.append(f"node {node.node_id}: stopped (pid {pid}) {how}")
            node.pid_file.unlink(missing_ok=True)
        return "\n".join(lines) or "no node of this cluster is running"

    def stop_node(self, node_id: int, timeout: float = 60.0) -> str:
        return f"node {node_id}: {self.node(node_id).stop(timeout)}"

    def kill_node(self, node_id: int) -> str:
        """SIGKILL one node, as a crash would: no controlled shutdown, no leader hand-over."""
        node = self.node(node_id)
        pid = node.running_pid()
        if pid is None:
            return f"node {node_id} is not running"
        send_signal(pid, signal.SIGKILL)
        node.wait_stopped(timeout=30)
        return f"node {node_id}: killed (SIGKILL to pid {pid})"

    def purge(self) -> None:
        """Delete the cluster's files (every node must be stopped)."""
        for node in self.nodes:
            node.purge()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # ---- inspection ---------------------------------------------------------------

    def status(self) -> list[NodeStatus]:
        leads = leader_counts(self.bootstrap)
        result = []
        for node in self.nodes:
            status = node.status()
            alive = status.pid is not None and status.reachable
            result.append(NodeStatus(node.node_id, status.pid, node.port, node.controller_port,
                                     alive, None if leads is None else leads.get(node.node_id, 0)))
        return result

    def logs(self, node_id: int, lines: int = 50) -> str:
        return self.node(node_id).logs(lines)


def leader_counts(bootstrap: str, timeout: float = 3.0) -> dict[int, int] | None:
    """How many partitions (internal topics included) each broker leads; None when no node answers."""
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout)
    except Exception:
        return None
    return dict(Counter(p.leader for t in metadata.topics.values() for p in t.partitions.values() if p.leader >= 0))


def partition_table(settings: Settings, topic: str | None = None, timeout: float = 5.0) -> pd.DataFrame:
    """A table of the topic's partitions: leader, replicas and in-sync replicas, as the brokers see them."""
    import pandas as pd

    name = topic or settings.topic
    metadata = admin_client(settings).list_topics(name, timeout=timeout)
    found = metadata.topics.get(name)
    if found is None or found.error is not None:
        raise BrokerError(f"topic {name!r} is not known to the cluster at {settings.bootstrap_servers}")
    rows = [{"partition": p.id, "leader": p.leader if p.leader >= 0 else None, "replicas": sorted(p.replicas),
             "isr": sorted(p.isrs)} for p in sorted(found.partitions.values(), key=lambda p: p.id)]
    return pd.DataFrame(rows).set_index("partition")


def leader_of(settings: Settings, partition: int, topic: str | None = None) -> int | None:
    """The node leading ``partition`` of the topic, or None while it has no leader."""
    import pandas as pd

    leader = partition_table(settings, topic).loc[partition, "leader"]
    return None if pd.isna(leader) else int(leader)


def wait_for_new_leader(settings: Settings, partition: int, old: int, timeout: float = 60.0,
                        topic: str | None = None) -> int:
    """Wait until ``partition`` (of the settings' topic, or ``topic``) is led by a node other than
    ``old``; returns the new leader."""
    def moved() -> int | None:
        leader = leader_of(settings, partition, topic)
        return leader if leader not in (None, old) else None

    return int(wait_for(moved, timeout, f"a new leader for partition {partition} of {topic or settings.topic}"))


TRANSACTION_LOG = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` (a signed 32-bit int), over UTF-16 code units."""
    value = 0
    units = text.encode("utf-16-be")
    for n in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[n:n + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def coordinator_partition(settings: Settings, internal_topic: str, key: str) -> int:
    """The partition of ``__transaction_state`` (key: a transactional id) or ``__consumer_offsets``
    (key: a group id) that holds ``key``, as the brokers choose it: the key's Java hash (sign bit
    cleared) modulo the topic's partition count. Its leader is the key's coordinator."""
    topic = admin_client(settings).list_topics(internal_topic, timeout=10).topics.get(internal_topic)
    if topic is None or topic.error is not None or not topic.partitions:
        raise BrokerError(f"{internal_topic} does not exist yet at {settings.bootstrap_servers}")
    return (java_string_hash(key) & 0x7FFFFFFF) % len(topic.partitions)


def wait_isr_whole(settings: Settings, replicas: int = NODES, timeout: float = 120.0) -> None:
    """Wait until every partition of the topic has all its replicas in sync."""
    wait_for(lambda: all(len(isr) == replicas for isr in partition_table(settings)["isr"]), timeout,
             f"every partition of {settings.topic} with {replicas} in-sync replicas")


def wait_out_of_isr(settings: Settings, node_id: int, timeout: float = 60.0) -> pd.DataFrame:
    """Wait until ``node_id`` is in no ISR of the topic (the controller fenced it); returns the table."""
    def shrunk() -> pd.DataFrame | None:
        table = partition_table(settings)
        return table if all(node_id not in isr for isr in table["isr"]) else None

    return wait_for(shrunk, timeout, f"node {node_id} leaving every ISR of {settings.topic}")


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call ``check`` until it returns something other than None or False (errors count as not yet);
    return that, or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result is not None and result is not False:
                return result
        except Exception as exc:  # a node that is down or electing answers with errors for a while
            last = exc
        time.sleep(interval)  # cluster metadata changes have no event a client can wait on
    raise BrokerError(f"{what} did not happen within {timeout:.0f}s" + (f" (last error: {last})" if last else ""))
