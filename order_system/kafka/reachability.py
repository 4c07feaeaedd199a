"""Is Kafka there? One sentence saying what is wrong and what to do, within a few seconds.

A client library alone waits its full timeout and then reports a bare time-out whether nothing
listens, a web server listens, or a broker is slow. ``kafka_problem`` tells these apart: a TCP
connect (nothing listens), a Kafka ApiVersions probe (something listens, but it is not Kafka),
then a metadata request (Kafka, but not usable). Commands run it before they touch Kafka;
``outage_cause`` says which brokers of a list do not answer (the API adds it to a 503).
"""

from __future__ import annotations

import socket
import struct

from ..config import Settings
from ..domain.errors import BrokerError

MAX_ADDRESSES = 3  # a long bootstrap list is judged by its first few entries


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """The first host and port of a bootstrap list such as ``127.0.0.1:9092,other:9092``."""
    first = bootstrap.split(",")[0].strip()
    first = first.split("://")[-1]
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise BrokerError(f"bootstrap address {bootstrap!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether anything accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def speaks_kafka(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether host:port answers a Kafka ApiVersions request (v0) with a matching reply.

    This tells a Kafka broker from any other program on the port without a Kafka client,
    so it answers in milliseconds either way.
    """
    correlation_id = 0x0C0FFEE
    client_id = b"order-system-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    size, answered_id = struct.unpack(">ii", header)
    return answered_id == correlation_id and 6 <= size < 1_000_000


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def answers_metadata(bootstrap: str, timeout: float = 5.0, client_options: dict[str, str] | None = None) -> bool:
    """Whether a Kafka client gets cluster metadata with at least one broker from ``bootstrap``."""
    from confluent_kafka.admin import AdminClient

    config = {"bootstrap.servers": bootstrap, "log_level": 0, **(client_options or {})}
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)


def outage_cause(settings: Settings) -> str:
    """Which brokers of the bootstrap list do not answer, as a sentence ('' when all answer).

    The API adds it to a 503 so that "2 of 3 brokers do not answer" is said, not only "timed out".
    """
    addresses = [a.strip() for a in settings.bootstrap_servers.split(",") if a.strip()]
    plain = settings.client_options.get("security.protocol", "PLAINTEXT").upper() == "PLAINTEXT"
    down = []
    for address in addresses:
        host, port = parse_bootstrap(address)
        if not (speaks_kafka(host, port, timeout=0.5) if plain else port_open(host, port, timeout=0.5)):
            down.append(address)
    if not down:
        return ""
    if len(down) == len(addresses):
        return f"no broker answers at {settings.bootstrap_servers}"
    return (f"{len(down)} of {len(addresses)} brokers do not answer ({', '.join(down)}), so the cluster cannot "
            "keep min.insync.replicas copies of a write (acks=all) until they are back")


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for entry in bootstrap.split(","):
        try:
            found.append(parse_bootstrap(entry))
        except BrokerError:  # not host:port; the others may still be
            continue
    return found[:MAX_ADDRESSES]


def kafka_problem(settings: Settings, timeout: float = 4.0) -> str | None:
    """``None`` when a Kafka cluster answers at the bootstrap address, else what is wrong and what to do."""
    bootstrap = settings.bootstrap_servers
    addresses = _addresses(bootstrap)
    if not addresses:
        return f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not host:port; set it to e.g. 127.0.0.1:9092"
    listening = [(host, port) for host, port in addresses if port_open(host, port, timeout=1.5)]
    if not listening:
        return (f"no Kafka broker answers at {bootstrap} (nothing accepts connections there); start one with "
                "`order-system broker start`, or point KAFKA_BOOTSTRAP_SERVERS at your cluster")
    plaintext = not settings.client_options.get("security.protocol", "").upper().startswith(("SSL", "SASL"))
    if plaintext and not any(speaks_kafka(host, port, timeout=2.0) for host, port in listening):
        return (f"something answers at {bootstrap}, but it is not a Kafka broker; stop that program, or point "
                "KAFKA_BOOTSTRAP_SERVERS at your Kafka broker")
    if answers_metadata(bootstrap, timeout=timeout, client_options=dict(settings.client_options)):
        return None
    return (f"a Kafka broker at {bootstrap} accepts connections but gave no cluster metadata within {timeout:.0f}s; "
            "see `order-system broker logs`, and check the KAFKA_SECURITY_/SASL_/SSL_ settings")


def require_kafka(settings: Settings, timeout: float = 4.0) -> None:
    """Raise ``BrokerError`` with ``kafka_problem``'s sentence when Kafka is not usable."""
    problem = kafka_problem(settings, timeout)
    if problem is not None:
        raise BrokerError(problem)
