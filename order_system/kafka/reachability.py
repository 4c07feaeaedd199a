"""Is Kafka there? One sentence saying what is wrong and what to do, within a few seconds.

A client library alone waits its full timeout and then reports a bare time-out whether nothing
listens, a web server listens, or a broker is slow. ``require_kafka`` tells these apart: a TCP
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
    host, sep, port = bootstrap.split(",")[0].strip().split("://")[-1].rpartition(":")
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
    """Whether host:port answers a Kafka ApiVersions request (v0) with a matching reply: this tells a
    Kafka broker from any other program on the port without a Kafka client, in milliseconds either way."""
    correlation_id = 0x0C0FFEE
    client_id = b"order-system-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:  # the timeout bounds each call
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""  # the reply's size and correlation id
            while len(header) < 8 and (chunk := sock.recv(8 - len(header))):
                header += chunk
    except OSError:
        return False
    if len(header) < 8:
        return False
    size, answered_id = struct.unpack(">ii", header)
    return answered_id == correlation_id and 6 <= size < 1_000_000


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


def require_kafka(settings: Settings, timeout: float = 4.0) -> None:
    """Raise ``BrokerError`` saying what is wrong and what to do unless a Kafka cluster answers at the
    bootstrap address."""
    bootstrap = settings.bootstrap_servers
    addresses = _addresses(bootstrap)
    if not addresses:
        raise BrokerError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not host:port; set it to e.g. 127.0.0.1:9092")
    listening = [(host, port) for host, port in addresses if port_open(host, port, timeout=1.5)]
    if not listening:
        raise BrokerError(f"no Kafka broker answers at {bootstrap} (nothing accepts connections there); start one "
                          "with `order-system broker start`, or point KAFKA_BOOTSTRAP_SERVERS at your cluster")
    plaintext = not settings.client_options.get("security.protocol", "").upper().startswith(("SSL", "SASL"))
    if plaintext and not any(speaks_kafka(host, port, timeout=2.0) for host, port in listening):
        raise BrokerError(f"something answers at {bootstrap}, but it is not a Kafka broker; stop that program, or "
                          "point KAFKA_BOOTSTRAP_SERVERS at your Kafka broker")
    if not answers_metadata(bootstrap, timeout=timeout, client_options=dict(settings.client_options)):
        raise BrokerError(f"a Kafka broker at {bootstrap} accepts connections but gave no cluster metadata within "
                          f"{timeout:.0f}s; see `order-system broker logs`, and check the KAFKA_SECURITY_/SASL_/SSL_ "
                          "settings")
