"""The table of ``benchmarks/compare.py``: its rows, their ratios to each section's baseline,
and the printed table, CSV and chart (also redrawn from an earlier run's CSV).

Each row also keeps the 1-minute load average (``os.getloadavg()``) at the start and end of
its measurement, so a reader can see how quiet the machine was.
"""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from order_system.local.broker import KAFKA_VERSION


@dataclass
class Row:
    section: str
    path: str
    value: float  # events/s, requests/s, or a p99 latency in ms
    unit: str
    baseline: bool = False
    note: str = ""
    ratio: float | None = None  # value / the section's baseline (latency: baseline / value is not used)
    load_start: float | None = None  # the 1-minute load average when the row's measurement began
    load_end: float | None = None  # ... and when it ended

    @property
    def load(self) -> str:
        if self.load_start is None or self.load_end is None:
            return ""
        return f"{self.load_start:.1f} to {self.load_end:.1f}"


def load_average() -> float:
    """The 1-minute load average: how busy the machine is (2 cores: 2.0 is both cores busy)."""
    return os.getloadavg()[0]


def with_ratios(rows: list[Row]) -> list[Row]:
    baselines = {r.section: r.value for r in rows if r.baseline}
    for row in rows:
        base = baselines.get(row.section)
        if base and base == base and row.value == row.value:  # not NaN
            row.ratio = row.value / base
    return rows


# ---- output --------------------------------------------------------------------------------------


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, Kafka {KAFKA_VERSION}"


def print_table(rows: list[Row], title: str) -> None:
    width = max([56, *(len(r.path) for r in rows)])
    print(f"\n{title}\n")
    print(f"| {'path':<{width}} | {'figure':>16} | {'vs baseline':>11} | {'load 1 min':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 18}|{'-' * 13}|{'-' * 12}|")
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            print(f"| {'**' + section + '**':<{width}} | {'':>16} | {'':>11} | {'':>10} |")
        figure = f"{row.value:,.0f} {row.unit}" if row.unit != "ms" else f"{row.value:,.1f} ms"
        ratio = "baseline" if row.baseline else (f"{row.ratio:.3f}x" if row.ratio is not None else "-")
        print(f"| {row.path:<{width}} | {figure:>16} | {ratio:>11} | {row.load:>10} |")
    notes = [r for r in rows if r.note]
    if notes:
        print()
        for row in notes:
            print(f"- {row.path}: {row.note}")


def write_csv(rows: list[Row], path: Path, stamp: str, command: str) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["section", "path", "value", "unit", "baseline", "ratio", "note", "measured_at", "machine",
                      "command", "load_start", "load_end"])
        for row in rows:
            out.writerow([row.section, row.path, f"{row.value:.3f}", row.unit, row.baseline,
                          "" if row.ratio is None else f"{row.ratio:.4f}", row.note, stamp, machine(), command,
                          "" if row.load_start is None else f"{row.load_start:.2f}",
                          "" if row.load_end is None else f"{row.load_end:.2f}"])


def write_chart(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ratio is not None]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(shown) + 1.8))
    labels = [f"{r.section}: {r.path}" for r in shown]
    colors = ["#888888" if r.baseline else ("#d62728" if r.unit == "ms" else "#1f77b4") for r in shown]
    bars = ax.barh(range(len(shown)), [r.ratio for r in shown], color=colors)
    for bar, row in zip(bars, shown):
        figure = f"{row.value:,.1f} {row.unit}" if row.unit == "ms" else f"{row.value:,.0f} {row.unit}"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f"  {row.ratio:.2f}x  ({figure})",
                va="center", fontsize=8)
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")  # ratios from a hundredth to thousands: each on its own order of magnitude
    ratios = [r.ratio or 1.0 for r in shown]
    ax.set_xlim(min(0.5, min(ratios) / 2), max(2.0, max(ratios) * 40))
    ax.set_xlabel("figure / its section's baseline in the same run, log scale\n"
                  "(blue: throughput, higher is better; red: latency p99, lower is better; grey: baselines)")
    ax.set_title(title.replace(" | ", "\n", 1), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def redraw(path: Path, out: Path) -> int:
    """The table and chart of an earlier run, from its CSV (e.g. after editing the chart)."""
    with path.open() as f:
        rows_in = list(csv.DictReader(f))
    def load(text: str | None) -> float | None:
        return float(text) if text else None  # runs before the load was recorded have no such column

    rows = with_ratios([Row(r["section"], r["path"], float(r["value"]), r["unit"], r["baseline"] == "True", r["note"],
                            load_start=load(r.get("load_start")), load_end=load(r.get("load_end")))
                        for r in rows_in])
    first = rows_in[0]
    title = f"{first['command']} | {first['measured_at']} | {first['machine']}"
    print_table(rows, title)
    out.mkdir(parents=True, exist_ok=True)
    write_chart(rows, out / "compare.png", title)
    print(f"\nwrote {out / 'compare.png'}")
    return 0

