"""Commands on existing orders (pay, ship, deliver, cancel) through the API, at a fixed rate.

    .venv/bin/python benchmarks/command_latency.py --rate 500,1000 --seconds 30

An open-loop load generator (asyncio, keep-alive HTTP/1.1 connections): the run's commands get send times fixed
beforehand, ``rate`` per second, and a command's latency is measured from its SCHEDULED send
time to its answer, so a server that falls behind shows as latency instead of slowing the
client down (no coordinated omission). Each order's commands keep their lifecycle order
(pay, ship, deliver; pay, cancel; or cancel): a command waits for its order's previous answer,
and that wait counts in its latency. The commands are dealt round-robin over the orders, so
many orders are in flight at once and one order's commands are seconds apart.

First ``order-system serve`` gets its orders (created through the API and read back, not
timed); then the commands run. The same generator drives ``benchmarks/trivial_app.py`` (its
command route answers 202 at once) at the same rate in the same run: that baseline is what the
client and the server stack cost alone. Every non-2xx answer and every failed request is
counted and reported; none is dropped from the figures. ``compare.py --only commands`` runs
these rows beside the rest of issue 13's table, at each rate of ``--command-rate`` (default
500 and 1,000 a second), each rate a section of its own.

While serve's commands run, ``cpu.py`` measures the CPU time of serve, of its child processes,
of the broker and of this generator: the rows of ``CPU per command at <rate>/s``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from compare import ROOT, Server
from cpu import CpuWindow
from report import Row

from order_system import Settings, create_topics, delete_topics

SECTION = "commands p99"
LIFECYCLES = (("pay", "ship", "deliver"), ("pay", "ship", "deliver"), ("pay", "cancel"), ("cancel",))
TIMEOUT = 30.0  # per request; a command the server holds longer counts as failed
IDLE_SECONDS = 3.0  # a connection idle longer is replaced: uvicorn closes idle ones after 5 s


@dataclass
class Outcome:
    """What one run of the generator saw."""

    latencies: list[float] = field(default_factory=list)  # ms, scheduled send -> answer, every answer
    lateness: list[float] = field(default_factory=list)  # ms, scheduled -> woken to send (the generator's lag)
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "409", "no answer in 30 s", ...
    sent_in: float = 0.0
    planned: int = 0  # commands in the plan; those after a failed one on the same order are not sent

    @property
    def answered(self) -> int:
        """Commands the server answered, whatever the status (not those it timed out on, nor failures)."""
        return sum(n for status, n in self.statuses.items() if status.isdigit())

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    def quantile(self, values: list[float], q: int) -> float:
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=100)[q - 1]

    def note(self, rate: int) -> str:
        count = len(self.latencies)
        failures = ", ".join(f"{n} x {s}" for s, n in sorted(self.statuses.items()) if not s.startswith("2"))
        return (f"p50 {self.quantile(self.latencies, 50):.1f} ms, max {max(self.latencies, default=0):.1f} ms; "
                f"{count} commands at {rate}/s ({count / self.sent_in:,.0f}/s answered"
                f"{f', {self.planned - count} not sent after their order failed' if self.planned > count else ''}); "
                f"{self.failed} non-2xx{': ' + failures if failures else ''}; "
                f"generator lag p99 {self.quantile(self.lateness, 99):.1f} ms")


def plan(count: int, orders: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """Orders and their commands, ``count`` commands in all; ids are taken from ``orders`` (which
    must be long enough) or made up (for the trivial app, which keeps nothing)."""
    plans: list[tuple[str, list[str]]] = []
    total = 0
    while total < count:
        n = len(plans)
        steps = list(LIFECYCLES[n % len(LIFECYCLES)][: count - total])
        plans.append((orders[n] if orders is not None else f"o{n:07d}", steps))
        total += len(steps)
    return plans


def orders_needed(count: int) -> int:
    return len(plan(count))


def schedule(plans: list[tuple[str, list[str]]]) -> list[list[int]]:
    """Slot numbers per order: round r deals every order's r-th command, one slot each."""
    slots: list[list[int]] = [[] for _ in plans]
    slot, rnd = 0, 0
    while any(len(steps) > rnd for _, steps in plans):
        for i, (_, steps) in enumerate(plans):
            if len(steps) > rnd:
                slots[i].append(slot)
                slot += 1
        rnd += 1
    return slots


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, taken in turn (a plain client: at a few
    hundred requests per second on a shared machine, httpx's own cost would be the figure)."""

    def __init__(self, url: str, most: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.most = host, int(port), most
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = asyncio.Queue()
        self.opened = 0

    async def post(self, path: str) -> int:
        """POST ``path`` with no body; the answer's status code (its body read and dropped)."""
        loop = asyncio.get_running_loop()
        if self.idle.empty() and self.opened < self.most:
            self.opened += 1
            reader, writer = await asyncio.open_connection(self.host, self.port)
        else:
            reader, writer, since = await self.idle.get()
            if loop.time() - since > IDLE_SECONDS:  # the server may be closing it: never send on it
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 0\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        if headers.get("connection") == "close":
            writer.close()
            self.opened -= 1
        else:
            self.idle.put_nowait((reader, writer, loop.time()))
        return int(lines[0].split()[1])

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


async def drive(url: str, plans: list[tuple[str, list[str]]], rate: int, connections: int = 256) -> Outcome:
    """Send every order's commands at their slot times (``rate`` slots per second), each after
    its order's previous answer; latency from the slot's time to the answer."""
    outcome = Outcome(planned=sum(len(steps) for _, steps in plans))
    slots = schedule(plans)
    pool = Connections(url, connections)
    loop = asyncio.get_running_loop()
    began = loop.time() + 0.2

    async def one_order(order_id: str, steps: list[str], order_slots: list[int]) -> None:
        for action, slot in zip(steps, order_slots):
            due = began + slot / rate
            if (pause := due - loop.time()) > 0:
                await asyncio.sleep(pause)  # pacing: the command's scheduled send time
                outcome.lateness.append((loop.time() - due) * 1000)  # the event loop's own lag
            try:
                status = str(await asyncio.wait_for(
                    pool.post(f"/api/orders/{order_id}/{action}?customerId=customer-1"), TIMEOUT))
            except asyncio.TimeoutError:
                status = f"no answer in {TIMEOUT:.0f} s"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status = type(exc).__name__
            outcome.latencies.append((loop.time() - due) * 1000)
            outcome.statuses[status] += 1
            if not status.startswith("2"):
                return  # the order's later commands would only be refused: not sent

    async def launch() -> None:
        """Each order's task made just before its first slot: thousands made at once would
        start the run late (the generator's lag, not the server's)."""
        tasks = []
        for (order_id, steps), order_slots in zip(plans, slots):
            if (lead := began + order_slots[0] / rate - 0.05 - loop.time()) > 0:
                await asyncio.sleep(lead)
            tasks.append(asyncio.create_task(one_order(order_id, steps, order_slots)))
        await asyncio.gather(*tasks)

    try:
        await launch()
    finally:
        pool.close()
    outcome.sent_in = loop.time() - began
    return outcome


async def create_orders(url: str, count: int, concurrency: int = 64) -> list[str]:
    """``count`` orders through ``POST /api/orders``, then each read back (processed): not timed."""
    import httpx

    ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:

        async def create() -> None:
            async with gate:
                answer = await client.post("/api/orders", json={"customerId": "customer-1"})
                answer.raise_for_status()
                ids.append(answer.json()["orderId"])

        async def seen(order_id: str) -> None:
            async with gate:
                deadline = time.monotonic() + 60
                while (await client.get(f"/api/orders/{order_id}")).status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"serve never showed order {order_id}")
                    await asyncio.sleep(0.1)  # a 503 asks to come back; nothing else to wait on

        await asyncio.gather(*(create() for _ in range(count)))
        await asyncio.gather(*(seen(o) for o in ids))
    return ids


def command_rows(settings: Settings, rate: int, seconds: float, work: Path) -> list[Row]:
    """The trivial app's command route, then ``serve``'s, driven alike: p99 in ms each; then
    the CPU per command answered of each process while serve's commands ran."""
    count = max(1, int(rate * seconds))
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": settings.topic, "ORDER_SYSTEM_HOME": str(work / "home-commands")}
    path = f"pay/ship/deliver/cancel at {rate}/s"
    trivial = Server([sys.executable, str(ROOT / "benchmarks" / "trivial_app.py")], env, work / "trivial-cmd.log")
    try:
        base = asyncio.run(drive(trivial.url, plan(count), rate))
    finally:
        trivial.stop()
    serve = Server([sys.executable, "-m", "order_system", "serve", "--port"], env, work / "serve-cmd.log")
    try:
        made = time.perf_counter()
        orders = asyncio.run(create_orders(serve.url, orders_needed(count)))
        made = time.perf_counter() - made
        cpu = CpuWindow(serve.process.pid, settings.bootstrap_servers).start()
        ours = asyncio.run(drive(serve.url, plan(count, orders), rate))
        cpu.stop()
    finally:
        serve.stop()
    section = f"{SECTION} at {rate}/s"
    return [Row(section, f"trivial FastAPI app, {path}", base.quantile(base.latencies, 99), "ms", True,
                base.note(rate)),
            Row(section, f"order-system serve, {path}", ours.quantile(ours.latencies, 99), "ms", False,
                ours.note(rate) + f"; {len(orders)} orders created first in {made:.1f} s (not timed)"),
            *cpu.rows(f"CPU per command at {rate}/s", ours.answered)]


def rates(text: str) -> list[int]:
    """``500`` or ``500,1000``: the command rates, each run in turn."""
    return [int(r) for r in str(text).split(",") if r.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=rates, default=[500, 1000],
                        help="commands per second, comma-separated, each rate in turn (default 500,1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the commands run (default 30)")
    args = parser.parse_args(argv)
    for rate in args.rate:
        settings = Settings.from_env().with_topic(f"bench-cmd-{os.getpid()}-{rate}")
        create_topics(settings)
        try:
            with tempfile.TemporaryDirectory(prefix="order-bench-") as work:
                for row in command_rows(settings, rate, args.seconds, Path(work)):
                    print(f"{row.section:<26} {row.path:<60} {row.value:8.1f} ms  {row.note}", flush=True)
        finally:
            delete_topics(settings, list(settings.all_topics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
