"""The ``order-system`` command (also ``python -m order_system``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from ..config import Settings
from ..domain.errors import OrderSystemError
from ..kafka.reachability import answers_metadata, require_kafka
from ..local.broker import LocalBroker, ensure_broker
from .children import GROUPS, die_with_parent


def _refuse(message: str, code: int = 2) -> int:
    """Say why on stderr and return the exit code (2: the command line asks for something impossible)."""
    print(message, file=sys.stderr)
    return code


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from ..local.cluster import LocalCluster

    from ..kafka.reachability import is_loopback, parse_bootstrap

    node = args.node
    host, port = parse_bootstrap(settings.bootstrap_servers)
    here = is_loopback(host) and LocalCluster(port=port).exists()  # a cluster set up earlier at this address
    wants_cluster = (args.nodes or 0) > 1 or (args.nodes is None and (node is not None or here))
    if not wants_cluster:
        if node is not None or args.action == "kill":
            return _refuse(f"no cluster was set up at {settings.bootstrap_servers}; "
                           "start one with `broker start --nodes 3`")
        if args.action == "start":
            ensure_broker(settings, say=print)
            return 0
        broker = LocalBroker.for_settings(settings)
        if args.action == "status":
            status = broker.status()
            print(status.describe())
            return 0 if status.reachable else 3
        print(broker.stop() if args.action == "stop" else broker.logs(args.lines))
        return 0
    cluster = LocalCluster.for_settings(settings, nodes=args.nodes or 3)
    if args.action == "status":
        import pandas as pd

        nodes = cluster.status()
        print(pd.DataFrame([n.row() for n in nodes]).to_string(index=False))
        print(f"bootstrap list: {cluster.bootstrap}")
        return 0 if all(n.alive for n in nodes) else 3
    if args.action == "start":
        if node is None:
            cluster.start(say=print)
        else:
            cluster.start_node(node, say=print)
        print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}")
    elif args.action == "stop":
        print(cluster.stop() if node is None else cluster.stop_node(node))
    elif args.action == "kill":
        if node is None:
            return _refuse("say which node to kill: `broker kill --node N`")
        print(cluster.kill_node(node))
    else:
        print(cluster.logs(node or 1, args.lines))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from ..kafka.topics import admin_client, choose_replication, create_topics

    replication = choose_replication(settings, admin_client(settings))
    print(f"using {replication.describe()}")
    for name, outcome in create_topics(settings, replication=replication).items():
        print(f"{name:<28} {outcome}")
    return 0


def _consume(args: argparse.Namespace, settings: Settings) -> int:
    """One group in this process until SIGINT or SIGTERM; then commit, close and exit 0.
    ``serve`` runs each of its groups this way, in a child process (``children.py``)."""
    die_with_parent()  # in a child of serve: stop when serve dies (first, before the slower imports)
    from ..bootstrap import runner_for, standard_group

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _log_records(args.log_records)
    options = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    if options and args.group != "order-processor":
        return _refuse("error: --batch-size applies to the order-processor only")
    group = standard_group(args.group, args.state_dir, instance_id=args.instance_id)
    runner = runner_for(group, settings, **options)
    if args.metrics_port is not None:
        from .metrics import registry_for, serve_metrics

        url, _ = serve_metrics(args.metrics_port, registry_for(settings, [args.group]), args.metrics_host)
        print(f"metrics at {url}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner.start()
    print(f"{args.group} consuming {', '.join(runner.topics)}; Ctrl-C to stop", flush=True)
    while not stop.wait(0.5):
        if not runner.running:
            why = getattr(runner, "fatal", None) or list(runner.errors)[-1:] or "see the log"
            return _refuse(f"{args.group} stopped on its own: {why}", 1)
    runner.stop()
    print(f"{args.group} stopped after {runner.processed} records; offsets committed", flush=True)
    return 0


def _produce_demo(args: argparse.Namespace, settings: Settings) -> int:
    from collections import Counter

    from ..kafka.producer import OrderProducer
    from ..kafka.topics import create_topics
    from ..local.demo import publish_lifecycles

    create_topics(settings)
    extra = {"sticky.partitioning.linger.ms": 0} if args.unkeyed else {}
    with OrderProducer(settings, extra_config=extra) as producer:
        futures = publish_lifecycles(producer, args.orders, seed=args.seed, keyed=not args.unkeyed,
                                     progress=ProgressBar("publishing"))
    deliveries = [f.result() for f in futures]
    per_partition = Counter(d.partition for d in deliveries)
    orders = len({d.event.order_id for d in deliveries if d.event})
    print(f"published {len(deliveries)} events of {orders} orders to {settings.topic}: "
          + ", ".join(f"partition {p}: {n}" for p, n in sorted(per_partition.items())))
    return 0


def _dlt(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from ..kafka.dead_letters import read_dead_letters, replay

    if args.action == "list":
        frame = read_dead_letters(settings)
        columns = ["partition", "offset", "key", "group", "reason", "attempts", "original-partition",
                   "original-offset", "error-message"]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(f"{settings.dead_letter_topic} is empty" if frame.empty else frame[columns].to_string(index=False))
        return 0
    if not args.records and not args.all:
        return _refuse("name records as PARTITION:OFFSET (see `order-system dlt list`), or pass --all")
    try:
        pairs = [tuple(int(x) for x in item.split(":")) for item in args.records] if args.records else None
    except ValueError:
        return _refuse(f"records must look like 0:17 (partition:offset), got {args.records}")
    count = replay(settings, pairs)  # type: ignore[arg-type]
    print(f"republished {count} record(s) to {settings.topic}")
    return 0


def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    from ..kafka.ordering import OrderedProducer
    from ..state.outbox import Outbox

    outbox = Outbox(args.path)
    if args.action == "list":
        for record in outbox.pending():
            print(f"{record.seq:>6}  {record.topic}  key={record.key!r}  cluster={record.cluster or '(unknown)'}  "
                  f"error={record.error}")
        per_cluster = ", ".join(f"{n} for cluster {c or '(unknown)'}" for c, n in outbox.clusters().items())
        print(f"{len(outbox)} record(s) in {outbox.path}" + (f": {per_cluster}" if per_cluster else ""))
        return 0
    if not len(outbox):
        print(f"nothing to resend: {outbox.path} is empty")
        return 0
    if not answers_metadata(settings.bootstrap_servers, client_options=dict(settings.client_options)):
        return _refuse(f"the broker at {settings.bootstrap_servers} does not answer; "
                       f"{len(outbox)} record(s) stay kept", 1)
    with OrderedProducer(settings, outbox) as producer:
        report = producer.resend_kept(adopt_unknown=args.adopt, progress=ProgressBar("resending"))
    print(report.describe())
    return 1 if report.busy or report.left else 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .serve import serve

    _log_records(args.log_records)
    serve(settings, port=args.port, host=args.host, api_only=args.api_only, state_dir=args.state_dir,
          instance_id=args.instance_id, log_records=args.log_records)
    return 0


MAX_BATCH = 10_000


def _batch_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if not 1 <= size <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{size} is not between 1 and {MAX_BATCH}")
    return size


def _instance_id(text: str) -> str:
    from ..services.processor import valid_instance_id

    try:
        return valid_instance_id(text)
    except OrderSystemError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _log_records(style: str) -> None:
    """``summary``/``line``: the consumers log a periodic summary or a line per record, and the
    lines per published record and per HTTP request are left out; ``block``: the tutorial's."""
    from ..kafka.record_log import log_records

    log_records(style)
    quiet = {"summary": RECORD_LOGGERS, "line": RECORD_LOGGERS[:1], "block": ()}[style]
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


RECORD_LOGGERS = ("order_system.kafka.producer.records", "order_system.interfaces.api.requests")


class ProgressBar:
    """A one-line progress bar on stderr, with no dependency: call ``bar(done, total)`` as work advances."""

    WIDTH = 30

    def __init__(self, label: str) -> None:
        self.label, self.began, self._last = label, time.monotonic(), -1.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return  # redraw at most ten times a second
        self._last = now
        filled = self.WIDTH * done // max(total, 1)
        rate = done / max(now - self.began, 1e-9)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} "
                         f"({rate:,.0f}/s)" + ("\n" if done >= total else ""))
        sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-system", description="An event-driven order system on Apache Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    runs = argparse.ArgumentParser(add_help=False)  # what `consume` and `serve` both take
    runs.add_argument("--state-dir", default=None, help="keep the notification-service's state in SQLite files here "
                      "(the order-processor keeps its state in the order-state topic)")
    runs.add_argument("--instance-id", type=_instance_id, default=None,
                      help="the order-processor's id, reused on restart; its transactional id is order-processor-<id> "
                           "(default: $ORDER_SYSTEM_INSTANCE_ID, else the host name; for serve <hostname>-<port>)")
    runs.add_argument("--log-records", choices=("summary", "line", "block"), default="summary",
                      help="summary (default): a line per group every 10 s; line: a line per record; "
                           "block: the tutorial's block per record, and every published record and request")

    p = sub.add_parser("broker", help="start, stop or inspect the local Apache Kafka broker (or cluster)")
    p.add_argument("action", choices=["start", "stop", "status", "logs", "kill"])
    p.add_argument("--lines", type=int, default=50, help="how many log lines `logs` shows")
    p.add_argument("--nodes", type=int, choices=range(1, 10), metavar="N", default=None,
                   help="start a cluster of N KRaft nodes (3 or more); 1 forces the single broker")
    p.add_argument("--node", type=int, default=None, metavar="N",
                   help="act on one node of the cluster (start, stop, kill with SIGKILL, logs)")
    p.set_defaults(run=_broker)

    p = sub.add_parser("topics", help="create the order, retry and dead-letter topics")
    p.add_argument("action", choices=["create"])
    p.set_defaults(run=_topics, needs_kafka=True)

    p = sub.add_parser("consume", parents=[runs], help="run one consumer group until Ctrl-C / SIGTERM")
    p.add_argument("--group", required=True, choices=GROUPS)
    p.add_argument("--batch-size", type=_batch_size, default=None,
                   help=f"order-processor: records per transaction at most, 1 to {MAX_BATCH} (default 2000)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on this port at /metrics (off by default)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="the address --metrics-port listens on")
    p.set_defaults(run=_consume, needs_kafka=True)

    p = sub.add_parser("produce-demo", help="publish N full order lifecycles, interleaved")
    p.add_argument("--orders", type=int, default=20)
    p.add_argument("--seed", type=int, default=None, help="make the run repeatable")
    p.add_argument("--unkeyed", action="store_true", help="publish without keys (to see why keys matter)")
    p.set_defaults(run=_produce_demo, needs_kafka=True)

    p = sub.add_parser("dlt", help="list dead-lettered records, or replay them after a fix")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("records", nargs="*", help="PARTITION:OFFSET of the records to replay")
    p.add_argument("--all", action="store_true", help="replay every dead-lettered record")
    p.set_defaults(run=_dlt, needs_kafka=True)

    p = sub.add_parser("outbox", help="list or resend events the broker did not acknowledge")
    p.add_argument("action", choices=["list", "resend"])
    p.add_argument("--path", default=None, help="the outbox file (default ~/.cache/order-system/outbox.db)")
    p.add_argument("--adopt", action="store_true",
                   help="also resend records of an unknown cluster (kept before any broker answered) to this one")
    p.set_defaults(run=_outbox)

    p = sub.add_parser("serve", parents=[runs], help="run the REST API with the consumer groups")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-only", action="store_true",
                   help="run the API (with its view of every order) and the order-processor only, "
                        "not the notification-service and analytics-service")
    p.set_defaults(run=_serve, needs_kafka=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "orders", 1) < 1:
        parser.error("--orders must be at least 1")
    try:
        settings = Settings.from_env()
        if getattr(args, "needs_kafka", False):
            require_kafka(settings)  # one clear sentence within seconds, not a 30 s time-out
        return int(args.run(args, settings) or 0)
    except OrderSystemError as exc:
        print(f"order-system: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
