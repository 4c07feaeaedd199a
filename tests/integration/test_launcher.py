"""The local broker launcher: its error paths, and status across start, kill -9 and stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from order_system.local.broker import LocalBroker, speaks_kafka
from order_system.domain.errors import BrokerError



def fake_java(tmp_path: Path, on_start: str, version: str = "17.0.9") -> str:
    """A `java` stand-in for launcher error paths: reports ``version``; ``on_start`` runs as kafka.Kafka."""
    script = tmp_path / "java"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "args = ' '.join(sys.argv)\n"
        f"if '-version' in sys.argv: sys.stderr.write('openjdk version \"{version}\" 2023-10-17\\n'); sys.exit(0)\n"
        "if 'random-uuid' in args: print('q1Sh-9_ISia_zwGINzRvyQ'); sys.exit(0)\n"
        "if 'StorageTool' in args: sys.exit(0)\n"
        f"{on_start}\n"
    )
    script.chmod(0o755)
    return str(script)


def launcher(tmp_path: Path, port: int, **kwargs: object) -> LocalBroker:
    broker = LocalBroker(home=tmp_path / "home", port=port, **kwargs)  # type: ignore[arg-type]
    broker.libs_dir.mkdir(parents=True)
    (broker.libs_dir / ".complete").write_text("test: no jars needed\n")
    return broker


def test_missing_java_names_the_docker_alternative(tmp_path: Path, free_port: int) -> None:
    broker = launcher(tmp_path, free_port, java=str(tmp_path / "no-such-java"))
    with pytest.raises(BrokerError, match=r"Java 17 or newer.*docker compose up -d"):
        broker.start(timeout=5)


def test_old_java_is_refused(tmp_path: Path, free_port: int) -> None:
    broker = launcher(tmp_path, free_port, java=fake_java(tmp_path, "sys.exit(0)", version="11.0.2"))
    with pytest.raises(BrokerError, match=r"Java 11.*needs 17"):
        broker.start(timeout=5)


def test_missing_maven_is_reported_when_jars_are_not_cached(tmp_path: Path, free_port: int) -> None:
    broker = LocalBroker(home=tmp_path / "empty", port=free_port, mvn=str(tmp_path / "no-mvn"))
    with pytest.raises(BrokerError, match=r"Maven.*docker compose up -d"):
        broker.start(timeout=5)


def test_port_taken_by_something_else(tmp_path: Path, not_kafka_port: int) -> None:
    assert not speaks_kafka("127.0.0.1", not_kafka_port)
    broker = LocalBroker(home=tmp_path, port=not_kafka_port)
    with pytest.raises(BrokerError, match=rf"port {not_kafka_port} .* not a Kafka broker"):
        broker.start(timeout=5)


def test_broker_that_never_becomes_ready_is_stopped(tmp_path: Path, free_port: int) -> None:
    broker = launcher(tmp_path, free_port,
                      java=fake_java(tmp_path, "print('pretending to start', flush=True); time.sleep(300)"))
    with pytest.raises(BrokerError, match=r"did not answer .* within 2s(.|\n)*pretending to start"):
        broker.start(timeout=2)
    status = broker.status()
    assert status.pid is None and not status.reachable
    assert status.state == "stopped"


def test_broker_that_exits_during_start_shows_its_log(tmp_path: Path, free_port: int) -> None:
    broker = launcher(tmp_path, free_port,
                      java=fake_java(tmp_path, "print('FATAL: bad config', flush=True); sys.exit(1)"))
    with pytest.raises(BrokerError, match=r"exited during start-up(.|\n)*FATAL: bad config"):
        broker.start(timeout=10)
    assert broker.recorded_pid() is None


def test_status_is_right_after_start_kill_and_stop(spare_broker: LocalBroker) -> None:
    """A second real broker on free ports, sharing the cached jars with the main one."""
    broker = spare_broker
    assert broker.status().state == "stopped"
    assert broker.start(timeout=90) == "started"
    status = broker.status()
    assert status.state == "running" and status.pid is not None and status.reachable

    os.kill(status.pid, signal.SIGKILL)
    assert broker.wait_stopped(timeout=30)
    killed = broker.status()
    assert killed.state == "stopped" and killed.stale_pid == status.pid and not killed.reachable
    assert f"pid {status.pid}) is gone" in killed.describe()

    assert broker.start(timeout=90) == "started"  # restarts over the existing storage
    assert broker.start(timeout=5) == "reused"
    assert broker.stop().startswith("stopped the broker")
    assert broker.status().state == "stopped"
    assert broker.stop() == "no broker started by order-system is running"
