"""The ``order-system`` command (also ``python -m order_system``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .broker import LocalBroker, ensure_broker
from .config import Settings
from .errors import OrderSystemError

Command = Callable[[argparse.Namespace, Settings], int]


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "start":
        ensure_broker(settings, say=print)
        return 0
    broker = LocalBroker.for_settings(settings)
    if args.action == "stop":
        print(broker.stop())
        return 0
    if args.action == "status":
        status = broker.status()
        print(status.describe())
        return 0 if status.reachable else 3
    print(broker.logs(args.lines))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from .topics import create_topics

    for name, outcome in create_topics(settings).items():
        print(f"{name:<28} {outcome}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-system", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="start, stop or inspect the local Apache Kafka broker")
    broker.add_argument("action", choices=["start", "stop", "status", "logs"])
    broker.add_argument("--lines", type=int, default=50, help="how many log lines `logs` shows")
    broker.set_defaults(run=_broker)

    topics = sub.add_parser("topics", help="create the order, retry and dead-letter topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(run=_topics)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Sub-commands contributed by the other adapters (consumers, API, dead letters ...)."""
    registrars = []
    for module, name in [
        ("order_system.runner", "register_cli"),
        ("order_system.dead_letters", "register_cli"),
        ("order_system.outbox", "register_cli"),
        ("order_system.api", "register_cli"),
    ]:
        try:
            imported = __import__(module, fromlist=[name])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registrars.append(getattr(imported, name))
    return registrars


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.run(args, settings) or 0)
    except OrderSystemError as exc:
        print(f"order-system: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
