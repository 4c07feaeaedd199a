"""Where the CPU goes while ``serve`` answers commands: CPU seconds per process over a timed
window, from ``/proc/<pid>/stat`` (utime + stime, every thread of the process; Linux only).

The processes: ``serve``'s own, each of its child processes (found through the ppid field of
``/proc/*/stat``, children of children included, named by their command line, e.g.
``consume --group order-processor``; there may be none), the Kafka broker (the process
listening on the bootstrap port, else the one process whose command line has ``kafka.Kafka``)
and the load generator (this process). Each is reported as % of one core and as ms of CPU per
command answered, in rows of their own beside the sum of them all (the section's baseline, so a
row's ratio is its share of the total).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from report import Row

TICKS = os.sysconf("SC_CLK_TCK")  # utime and stime are counted in these
CHILD = "serve child: "  # the rows of serve's children start so (there may be any number, or none)
PER_RUN = {"--instance-id", "--state-dir", "--port", "--metrics-port", "--metrics-host"}  # left out of names


def cpu_seconds(pid: int) -> float | None:
    """The process's user + system CPU seconds so far (all its threads), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def parent_of(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])


def pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        parent = parent_of(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def short_name(pid: int) -> str:
    """A child's name from its command line: what follows ``-m module`` or the script, less the
    options whose values change from run to run (``PER_RUN``), e.g. ``consume --group
    order-processor``; the executable's name if nothing follows."""
    argv = command_line(pid)
    if not argv:
        return f"pid {pid}"
    rest = argv[1:]
    if "-m" in rest:
        module, rest = rest[rest.index("-m") + 1:][:1], rest[rest.index("-m") + 2:]
        rest = rest if module == ["order_system"] else [*module, *rest]  # `-m order_system consume ...`: consume ...
    elif rest and not rest[0].startswith("-"):
        rest = rest[1:]  # a script's path
    words: list[str] = []
    skip = False
    for word in rest:
        if skip:
            skip = False
        elif word in PER_RUN:
            skip = True  # and its value, the next word
        elif word.split("=", 1)[0] not in PER_RUN:
            words.append(word)
    name = " ".join(words) or os.path.basename(argv[0])
    return name if len(name) <= 40 else name[:39] + "…"


def broker_pid(bootstrap: str) -> int | None:
    """The pid listening on the bootstrap server's port (the first of the list), else the one
    process with ``kafka.Kafka`` in its command line; None when neither tells."""
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if inodes:
        for pid in pids():
            try:
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                    return pid
            except OSError:  # gone, or not ours to look into
                continue
    brokers = [pid for pid in pids() if "kafka.Kafka" in command_line(pid)]
    return brokers[0] if len(brokers) == 1 else None


@dataclass
class CpuWindow:
    """CPU seconds of ``serve`` (``server``), its children, the broker and this process between
    ``start()`` and ``stop()``."""

    server: int
    bootstrap: str
    began: float = 0.0
    took: float = 0.0
    before: dict[int, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)  # row name -> CPU seconds in the window
    missing: list[str] = field(default_factory=list)

    def named(self) -> dict[int, str]:
        names = {self.server: "serve's own process", os.getpid(): "load generator (this process)"}
        broker = broker_pid(self.bootstrap)
        if broker is not None:
            names[broker] = "Kafka broker"
        taken: set[str] = set()
        for pid in descendants(self.server):
            name = CHILD + short_name(pid)
            names[pid] = name if name not in taken else f"{name} (pid {pid})"
            taken.add(name)
        return names

    def start(self) -> CpuWindow:
        self.names = self.named()
        self.before = {pid: s for pid in self.names if (s := cpu_seconds(pid)) is not None}
        self.began = time.perf_counter()
        return self

    def stop(self) -> CpuWindow:
        self.took = time.perf_counter() - self.began
        for pid, name in {**self.named(), **self.names}.items():  # children started meanwhile count whole
            after = cpu_seconds(pid)
            if after is None:
                self.missing.append(f"{name} ended before the window did (not counted)")
                continue
            self.used[name] = after - self.before.get(pid, 0.0)
        if "Kafka broker" not in self.used:
            self.missing.append("the broker's process was not found (not counted)")
        return self

    def rows(self, section: str, answered: int) -> list[Row]:
        """One row per process, ms of CPU per command answered, after the sum of them all."""
        answered = max(1, answered)
        order = sorted(self.used, key=lambda n: (n.startswith(CHILD), n != "serve's own process", n))
        total = sum(self.used.values())

        def note(seconds: float) -> str:
            return (f"{seconds / self.took:.0%} of one core; {seconds:.2f} CPU s in {self.took:.1f} s,"
                    f" {answered} commands answered")

        rows = [Row(section, "all of them (serve, its children, broker, generator)", total * 1000 / answered,
                    "ms", True, note(total) + (f"; {'; '.join(self.missing)}" if self.missing else ""))]
        rows += [Row(section, name, self.used[name] * 1000 / answered, "ms", False, note(self.used[name]))
                 for name in order]
        return rows
