"""A real Apache Kafka broker on this machine, without Docker.

The first start fetches Apache Kafka's own jars from Maven Central with Maven into a cache
directory; later starts need no network. The broker is one KRaft node (broker and controller
in one JVM) listening on 127.0.0.1. Users with Docker can use ``docker-compose.yml`` instead:
it runs the official image with the same ports and settings.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, default_home
from ..domain.errors import BrokerError
from ..kafka.reachability import answers_metadata, is_loopback, parse_bootstrap, port_open, speaks_kafka
from .maven import (DOCKER_HINT, KAFKA_VERSION, LOG4J_VERSION, SCALA_VERSION, MavenError, Say, check_tools,
                    cleaner_buffer_bytes, fetch_jars, jars_ready, quiet)

LOG4J_PROPERTIES = (
    "appender.out.type=Console\nappender.out.name=out\n"
    "appender.out.layout.type=PatternLayout\n"
    "appender.out.layout.pattern=[%d] %p %m (%c)%n\n"
    "rootLogger.level=INFO\nrootLogger.appenderRef.out.ref=out\n"
    "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
    "logger.org.name=org.apache.kafka\nlogger.org.level=WARN\n"
    "logger.state.name=state.change.logger\nlogger.state.level=WARN\n"
    # who leads the controller quorum, which broker it fences, which coordinator loads where
    "logger.controller.name=org.apache.kafka.controller\nlogger.controller.level=INFO\n"
    "logger.raft.name=org.apache.kafka.raft.QuorumState\nlogger.raft.level=INFO\n"
    "logger.coordinators.name=org.apache.kafka.coordinator.common.runtime.CoordinatorRuntime\n"
    "logger.coordinators.level=INFO\n"
)


def kafka_uuid() -> str:
    """A random id in Kafka's text form (URL-safe base64 of 16 bytes), as StorageTool random-uuid prints."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a command-line option
            return text


@dataclass(frozen=True)
class BrokerStatus:
    """What is true about the broker right now."""

    bootstrap: str
    reachable: bool
    pid: int | None  # the process order-system started, if it is still alive
    stale_pid: int | None  # a recorded pid whose process is gone (killed, crashed)
    listening: bool = False  # something accepts TCP connections at the address (Kafka or not)

    @property
    def state(self) -> str:
        if self.pid is not None:
            return "running" if self.reachable else "starting-or-unresponsive"
        if self.reachable:
            return "running-external"
        return "not-kafka" if self.listening else "stopped"

    def describe(self) -> str:
        gone = f"; the broker it started (pid {self.stale_pid}) is gone" if self.stale_pid else ""
        return {
            "running": f"running at {self.bootstrap} (started by order-system, pid {self.pid})",
            "starting-or-unresponsive": f"process {self.pid} is alive but {self.bootstrap} does not answer as Kafka",
            "running-external": f"running at {self.bootstrap} (not started by order-system)",
            "not-kafka": (f"not Kafka: something answers at {self.bootstrap}, but it is not a Kafka broker; stop that "
                          "program, or point KAFKA_BOOTSTRAP_SERVERS at another port"),
            "stopped": f"stopped: nothing answers at {self.bootstrap}{gone}",
        }[self.state]


class LocalBroker:
    """Fetch, format, start, stop and inspect one local KRaft broker.

    Files live under ``home`` (default ``~/.cache/order-system``):
    ``kafka-<version>/libs`` holds the jars; ``broker-<port>/`` holds the configuration,
    data, log and pid file of the broker listening on that port.
    """

    def __init__(
        self,
        home: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 9092,
        heap: str = "512m",
        java: str = "java",
        mvn: str = "mvn",
        state_dir: Path | None = None,
    ) -> None:
        self.home = Path(home) if home else default_home()
        self.host = host
        self.port = port
        self.controller_port = port + 1
        self.heap = heap
        self.java = java
        self.mvn = mvn
        self.dist_dir = self.home / f"kafka-{KAFKA_VERSION}"
        self.libs_dir = self.dist_dir / "libs"
        self.state_dir = Path(state_dir) if state_dir else self.home / f"broker-{port}"
        self.data_dir = self.state_dir / "data"
        self.config_file = self.state_dir / "server.properties"
        self.log4j_file = self.state_dir / "log4j2.properties"
        self.log_file = self.state_dir / "broker.log"
        self.pid_file = self.state_dir / "broker.pid"

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalBroker:
        host, port = parse_bootstrap(settings.bootstrap_servers)
        if not is_loopback(host):
            raise BrokerError(
                f"KAFKA_BOOTSTRAP_SERVERS points at {settings.bootstrap_servers}, which is not this "
                "machine; order-system only starts brokers on 127.0.0.1. Unset it to use a local broker."
            )
        return cls(port=port)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- inspection ---------------------------------------------------------------

    def recorded_pid(self) -> int | None:
        try:
            return int(json.loads(self.pid_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _alive(self, pid: int) -> bool:
        """Whether ``pid`` is a live (not zombie) process running our broker configuration
        (our own exited child is reaped first, so it does not linger as a zombie)."""
        _reap(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        if not cmdline.strip():  # the java launcher re-executing itself: still our process
            return "(java)" in stat
        return "kafka.Kafka" in cmdline and str(self.config_file) in cmdline

    def running_pid(self) -> int | None:
        """The recorded pid while its process is alive."""
        pid = self.recorded_pid()
        return pid if pid is not None and self._alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self.recorded_pid()
        alive = pid is not None and self._alive(pid)
        reachable = speaks_kafka(self.host, self.port)
        return BrokerStatus(
            bootstrap=self.bootstrap,
            reachable=reachable,
            pid=pid if alive else None,
            stale_pid=None if alive else pid,
            listening=reachable or port_open(self.host, self.port),
        )

    def logs(self, lines: int = 50) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return f"(no broker log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])

    # ---- set-up -------------------------------------------------------------------

    def fetch_jars(self, say: Say = quiet) -> Path:
        """Copy Kafka's runtime jars (and the log4j bridge) from Maven Central into the cache (once)."""
        artifacts = [("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
                     ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION)]
        try:
            return fetch_jars(self.dist_dir, artifacts, what=f"Apache Kafka {KAFKA_VERSION} jars", mvn=self.mvn,
                              say=say)
        except MavenError as exc:
            raise BrokerError(f"{exc}\n{DOCKER_HINT}") from exc

    def _properties(self) -> dict[str, str]:
        """The node's server.properties as a dict (a cluster node overrides some of them)."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # the cleaner allocates its dedupe buffer at start; Kafka's 128 MB default does not fit a small heap
            "log.cleaner.dedupe.buffer.size": str(cleaner_buffer_bytes(self.heap)),
            # when no log needs cleaning, the cleaner looks again after this pause (Kafka's default: 15 s);
            # 1 s lets notebook 07 watch a compacted topic being cleaned
            "log.cleaner.backoff.ms": "1000",
        }

    def _format_args(self) -> list[str]:
        """How StorageTool sets up the controller quorum (this node alone) and the cluster id it formats the
        storage with (a new one); a cluster node overrides both: one quorum of all nodes, one shared id."""
        return ["--standalone", "-t", kafka_uuid()]

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        return [
            self.java, f"-Xmx{heap or self.heap}", f"-Xms{heap or '128m'}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp", f"{self.libs_dir}/*", main, *args,
        ]

    def format_storage(self) -> None:
        """Write the configuration and, the first time, format the KRaft storage."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        self.log4j_file.write_text(LOG4J_PROPERTIES)
        if (self.data_dir / "meta.properties").exists():
            return
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", *self._format_args(),
                       "-c", str(self.config_file), "--ignore-formatted", heap="128m"),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise BrokerError(f"could not format {self.data_dir}:\n{(done.stdout + done.stderr)[-2000:]}")

    # ---- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 90.0, say: Say = quiet) -> str:
        """Start the broker and return once it answers a metadata request.

        Returns ``"reused"`` when a Kafka broker already answers at the address, else
        ``"started"``. Raises ``BrokerError`` saying why, with the tail of the broker log.
        """
        if speaks_kafka(self.host, self.port):
            say(f"A Kafka broker already answers at {self.bootstrap}; reusing it.")
            return "reused"
        if port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is taken by something that is not a Kafka broker; "
                "stop that program or point KAFKA_BOOTSTRAP_SERVERS at another port"
            )
        pid = self.running_pid()
        if pid is not None:
            say(f"Broker process {pid} is alive but not answering yet; waiting for it.")
        else:
            pid = self._launch(say)
            say(f"Starting Apache Kafka {KAFKA_VERSION} (pid {pid}) at {self.bootstrap} ...")
        self._wait_ready(pid, timeout)
        say(f"Kafka is ready at {self.bootstrap}.")
        return "started"

    def _launch(self, say: Say) -> int:
        """Check the tools, fetch the jars and format the storage (each only if needed), start the JVM: its pid."""
        check_tools(self.java, self.mvn, not jars_ready(self.dist_dir), f"Kafka {KAFKA_VERSION}")
        self.fetch_jars(say)
        self.format_storage()
        with open(self.log_file, "ab") as log:
            try:
                process = subprocess.Popen(
                    self._java("kafka.Kafka", str(self.config_file)),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=self.state_dir,
                )
            except OSError as exc:
                raise BrokerError(f"could not run {self.java}: {exc}. {DOCKER_HINT}") from exc
        self.pid_file.write_text(json.dumps({"pid": process.pid, "bootstrap": self.bootstrap, "started": time.time()}))
        return process.pid

    def _wait_ready(self, pid: int, timeout: float) -> None:
        def ready() -> bool:
            if not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker process exited during start-up. Last log lines:\n{self.logs(30)}")
            return speaks_kafka(self.host, self.port, timeout=1.0) and answers_metadata(self.bootstrap, timeout=5.0)

        if poll_until(ready, timeout, 0.2):
            return
        self._terminate(pid, grace=10.0)
        raise BrokerError(
            f"the broker did not answer at {self.bootstrap} within {timeout:.0f}s and was stopped. "
            f"Last log lines:\n{self.logs(30)}"
        )

    def stop(self, timeout: float = 30.0) -> str:
        """Stop the broker this launcher started (and nothing else); say what happened."""
        pid = self.recorded_pid()
        if pid is None:
            if speaks_kafka(self.host, self.port):
                return f"the broker at {self.bootstrap} was not started by order-system; left running"
            return "no broker started by order-system is running"
        if not self._alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return f"the broker (pid {pid}) had already exited"
        how = self._terminate(pid, grace=timeout)
        self.pid_file.unlink(missing_ok=True)
        return f"stopped the broker (pid {pid}) {how}"

    def wait_stopped(self, timeout: float = 30.0) -> bool:
        """Wait until the recorded process is gone and nothing answers at the address."""
        return poll_until(lambda: self.running_pid() is None and not port_open(self.host, self.port), timeout, 0.1)

    def purge(self) -> None:
        """Delete this broker's configuration, data and log (it must be stopped)."""
        pid = self.running_pid()
        if pid is not None:
            raise BrokerError(f"the broker (pid {pid}) is running; stop it before purging {self.state_dir}")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _terminate(self, pid: int, grace: float) -> str:
        send_signal(pid, signal.SIGTERM)
        if poll_until(lambda: not self._alive(pid), grace, 0.1):
            return "cleanly (SIGTERM)"
        send_signal(pid, signal.SIGKILL)
        return f"with SIGKILL after {grace:.0f}s without exiting on SIGTERM"


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def send_signal(pid: int, signum: int) -> None:
    """Signal ``pid`` unless it is gone, and reap it if it was our child and has exited."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    _reap(pid)


def poll_until(done: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Call ``done`` every ``interval`` seconds until it returns True (then True) or ``timeout`` passes (False).

    Polling, because a process starting, exiting or being acknowledged gives no event this side can wait on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(interval)
    return False


def ensure_broker(settings: Settings | None = None, say: Say = print) -> str:
    """Make sure a broker answers at the configured address; start a local one if needed.

    A bootstrap address from the environment wins: it is used as it is, and only checked.
    Returns ``"reused"``, ``"started"`` or ``"external"``.
    """
    settings = settings or Settings.from_env()
    host, port = parse_bootstrap(settings.bootstrap_servers)
    if settings.bootstrap_from_env and not is_loopback(host):
        if not answers_metadata(settings.bootstrap_servers, client_options=dict(settings.client_options)):
            raise BrokerError(f"no Kafka cluster answers at KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}")
        say(f"Using the cluster at {settings.bootstrap_servers}.")
        return "external"
    return LocalBroker.for_settings(settings).start(say=say)
