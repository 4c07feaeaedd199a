"""Is Kafka there? One sentence saying what is wrong and what to do, within a few seconds.

A client library alone waits its full timeout and then reports a bare time-out whether nothing
listens, a web server listens, or a broker is slow. ``kafka_problem`` tells these apart: a TCP
connect (nothing listens), a Kafka ApiVersions probe (something listens, but it is not Kafka),
then a metadata request (Kafka, but not usable). Commands run it before they touch Kafka.
"""

from __future__ import annotations

from ..local.broker import answers_metadata, parse_bootstrap, port_open, speaks_kafka
from ..config import Settings
from ..domain.errors import BrokerError

MAX_ADDRESSES = 3  # a long bootstrap list is judged by its first few entries


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
