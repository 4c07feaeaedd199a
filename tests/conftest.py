"""Fixtures for tests against the real broker: every test gets its own topics and groups."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from order_system.local.broker import LocalBroker, answers_metadata
from order_system.local.cluster import LocalCluster, cluster_port
from order_system.config import Settings
from order_system.kafka.topics import create_topics, delete_topics
from serving import free_port_pair


@pytest.fixture(scope="session")
def settings() -> Settings:
    found = Settings.from_env()
    if not answers_metadata(found.bootstrap_servers, client_options=dict(found.client_options)):
        pytest.fail(f"no Kafka broker answers at {found.bootstrap_servers}; run `order-system broker start`")
    return found


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that no other test uses: unique('grp') -> 'grp-3f9a2b1c'."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_settings(settings: Settings, unique: Callable[[str], str]) -> Iterator[Settings]:
    """Settings for a fresh order topic (with retry and dead-letter topics), deleted afterwards."""
    fresh = settings.with_topic(unique("test-order-events"))
    create_topics(fresh)
    yield fresh
    delete_topics(fresh, list(fresh.all_topics))


@pytest.fixture
def free_port() -> int:
    return free_port_pair()


@pytest.fixture
def port_pairs() -> Callable[[], int]:
    """``free_port_pair`` itself, for a test that may need several tries."""
    return free_port_pair


@pytest.fixture
def spare_broker(settings: Settings) -> Iterator[LocalBroker]:
    """A second real broker on free ports (not started), for tests that stop and kill it.

    It shares the cached jars with the main broker; it is stopped and its data deleted after.
    """
    broker = LocalBroker(port=free_port_pair(), heap="256m")
    yield broker
    broker.stop()
    broker.purge()


@pytest.fixture(scope="session")
def cluster(settings: Settings) -> Iterator[LocalCluster]:
    """The three-node cluster beside the single broker (ports from ``cluster_port``), started once per
    session for the tests that need it, with 384 MB heaps; stopped and deleted after if it started it."""
    local = LocalCluster(port=cluster_port(settings))
    outcome = local.start(timeout=180)
    yield local
    if outcome == "started":
        local.stop()
        local.purge()


@pytest.fixture
def cluster_settings(cluster: LocalCluster, unique: Callable[[str], str]) -> Iterator[Settings]:
    """Settings for a fresh topic on the cluster (RF 3, min ISR 2), every node up first; deleted after."""
    cluster.start(timeout=180)  # a test or notebook before may have stopped a node
    fresh = cluster.settings().with_topic(unique("cluster-orders"))
    create_topics(fresh)
    yield fresh
    delete_topics(fresh, list(fresh.all_topics))


@pytest.fixture
def not_kafka_port() -> Iterator[int]:
    """A real TCP server on a free port that answers like a small web server, never like Kafka."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    closing = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

    def serve() -> None:
        while not closing.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    closing.set()
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (close alone leaves it blocked on Linux)
    server.close()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the fake server's accept loop did not end"
