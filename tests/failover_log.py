"""What the surviving nodes' logs say happened after a node was killed: the failover test's time-line.

Read from each node's ``broker.log`` (log4j's ``[yyyy-MM-dd HH:mm:ss,SSS]`` stamps, local time), as
seconds after the kill: when a new controller took over, when it fenced the dead node, and when the
coordinators moved. A slow run then says which step was slow.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from order_system.local.cluster import LocalCluster

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \w+ (.*)$")
STEPS = {
    # a survivor stops hearing from the quorum's leader and starts an election (the victim led it)
    "vote": re.compile(r"RaftManager id=(\d+)\] Completed transition to ProspectiveState"),
    "controller": re.compile(r"QuorumController id=\d+\] In the new epoch \d+, the leader is (\d+)\."),
    "fenced": re.compile(r"Fencing broker (\d+) at epoch \d+ because its session has timed out"),
    "txn coordinator": re.compile(r"Elected as the txn coordinator for partition (\d+)"),
    "group coordinator": re.compile(r"GroupCoordinator id=\d+\] Scheduling loading of metadata from "
                                    r"__consumer_offsets-(\d+)"),
}


def steps_after(log: Path, killed: float, window: float) -> list[tuple[float, str, str]]:
    """(seconds after the kill, step, detail) for each step in one log within ``window`` seconds."""
    found = []
    if not log.exists():
        return found
    with log.open(errors="replace") as lines:
        for line in lines:
            stamped = STAMP.match(line)
            if stamped is None:
                continue
            at = datetime.strptime(stamped.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - killed
            if not 0 <= at <= window:
                continue
            for step, pattern in STEPS.items():
                if matched := pattern.search(stamped.group(2)):
                    found.append((at, step, matched.group(1)))
    return found


def failover_timeline(cluster: LocalCluster, victim: int, killed: float, partitions: dict[str, int],
                      window: float = 30.0) -> str:
    """One line: the first time a survivor logged each step, e.g. ``vote=+1.1s(node 3)
    controller=+1.3s(node 1) fenced=+3.4s(node 1) txn coordinator=+3.6s(node 3)``; ``partitions``
    picks which coordinator partition counts per step (the processor's). Steps are logged by the
    loggers ``local/broker.py`` sets to INFO."""
    first: dict[str, tuple[float, int]] = {}
    for node in cluster.nodes:
        if node.node_id == victim:
            continue
        for at, step, detail in steps_after(node.log_file, killed, window):
            if step in partitions and int(detail) != partitions[step]:
                continue
            if step == "controller" and int(detail) == victim:
                continue
            if step == "fenced" and int(detail) != victim:
                continue
            if step not in first or at < first[step][0]:
                first[step] = (at, node.node_id)
    parts = [f"{step}=+{at:.1f}s(node {node})" for step, (at, node) in sorted(first.items(), key=lambda s: s[1])]
    return " ".join(parts) or f"no failover step logged within {window:.0f}s"


QUORUM = re.compile(r"RaftManager id=\d+\] Completed transition to (\w+)"
                    r"|QuorumController id=\d+\] (In the new epoch \d+, the leader is \S+)"
                    r"|(Fencing broker \d+ at epoch \d+)|(Renouncing the leadership)")


def quorum_lines(cluster: LocalCluster, killed: float, before: float = 10.0, after: float = 20.0) -> list[str]:
    """Every node's controller-quorum changes from ``before`` seconds ahead of the kill to ``after``
    it (state transitions, new epochs, fencing), oldest first, e.g. ``-2.1s node 3 ProspectiveState``:
    a failed run then shows whether the quorum was already moving when the node was killed."""
    found = []
    for node in cluster.nodes:
        if not node.log_file.exists():
            continue
        with node.log_file.open(errors="replace") as lines:
            for line in lines:
                stamped = STAMP.match(line)
                if stamped is None or (matched := QUORUM.search(stamped.group(2))) is None:
                    continue
                at = datetime.strptime(stamped.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - killed
                if -before <= at <= after:
                    found.append((at, f"{at:+.1f}s node {node.node_id} {next(g for g in matched.groups() if g)}"))
    return [text for _, text in sorted(found)]
