"""The fenced blocks of the documentation, and the markers that say whether a test runs them.

Every fenced block in README.md, docs/*.md and benchmarks/README.md has, on the line right
before it, one of:

    <!-- run: NAME -->          a test uses it: ``block("NAME", "docs/rest-api.md")`` returns its text,
                                which the test runs (or, for a sample of output, compares with a run)
    <!-- not run: REASON -->    nothing runs it, and REASON says why (needs Docker, a diagram, ...)

Tests import it as ``from doc_blocks import block`` (tests/ is on sys.path, like tests/serving.py).
``problems()`` lists every block without a marker, every NAME used twice and every NAME that no
test under tests/ mentions; tests/unit/test_doc_blocks.py fails on any of them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RUN = re.compile(r"<!-- run: ([a-z0-9][a-z0-9-]*) -->")
NOT_RUN = re.compile(r"<!-- not run: (\S.*?) -->")
FENCE = re.compile(r"(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)")
# the modules that read the markers: mentioning a NAME there does not make a test run it
CHECKERS = (TESTS / "doc_blocks.py", TESTS / "unit" / "test_doc_blocks.py")


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md, docs/*.md and benchmarks/README.md: the files whose blocks must be marked."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]
    return [f for f in files if f.is_file()]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str  # the block's lines without the fences, dedented by the fence's indentation
    run: str | None  # the NAME of a `run:` marker
    reason: str | None  # the REASON of a `not run:` marker

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown file, and what is wrong with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker_at: int | None = None  # index of a marker line not yet followed by its fence
    n = 0
    while n < len(lines):
        stripped = lines[n].strip()
        opening = FENCE.fullmatch(lines[n].rstrip())
        if RUN.fullmatch(stripped) or NOT_RUN.fullmatch(stripped):
            if marker_at is not None:
                problems.append(f"{_shown(path)}:{marker_at + 1}: a marker with no fenced block right after it")
            marker_at = n
            n += 1
            continue
        if stripped.startswith("<!-- run:") or stripped.startswith("<!-- not run:"):
            problems.append(f"{_shown(path)}:{n + 1}: a malformed marker {stripped!r} "
                            "(use <!-- run: NAME --> with NAME in a-z, 0-9 and -, or <!-- not run: REASON -->)")
        if opening is None:
            if marker_at is not None:
                problems.append(f"{_shown(path)}:{marker_at + 1}: a marker with no fenced block right after it")
                marker_at = None
            n += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf" *{re.escape(fence[0])}{{{len(fence)},}} *")
        end = next((m for m in range(n + 1, len(lines)) if closing.fullmatch(lines[m])), None)
        if end is None:
            problems.append(f"{_shown(path)}:{n + 1}: a fenced block that is never closed")
            break
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line.lstrip() for line in lines[n + 1:end])
        marker = lines[marker_at].strip() if marker_at == n - 1 and marker_at is not None else ""
        run, not_run = RUN.fullmatch(marker), NOT_RUN.fullmatch(marker)
        block = Block(path, n + 1, opening["info"].strip(), body + "\n" if body else "",
                      run[1] if run else None, not_run[1] if not_run else None)
        if run is None and not_run is None:
            problems.append(f"{block.where}: a ```{block.language} block without a marker on the line before it "
                            "(<!-- run: NAME --> or <!-- not run: REASON -->)")
        blocks.append(block)
        marker_at = None
        n = end + 1
    if marker_at is not None:
        problems.append(f"{_shown(path)}:{marker_at + 1}: a marker with no fenced block right after it")
    return blocks, problems


def all_blocks(files: list[Path] | None = None) -> list[Block]:
    return [b for f in (doc_files() if files is None else files) for b in parse(f)[0]]


def block(name: str, file: str = "README.md") -> str:
    """The text of the block marked ``<!-- run: NAME -->`` in ``file`` (relative to the repository)."""
    found = [b for b in parse(ROOT / file)[0] if b.run == name]
    if len(found) != 1:
        raise LookupError(f"{file} has {len(found)} blocks marked <!-- run: {name} -->, not one")
    return found[0].text


def test_sources(tests: Path = TESTS, skip: tuple[Path, ...] = CHECKERS) -> str:
    """The text of every Python file under tests/ except the checkers themselves."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(tests.rglob("*.py")) if p not in skip)


def problems(files: list[Path] | None = None, sources: str | None = None) -> list[str]:
    """Everything wrong with the markers of ``files`` (default: ``doc_files()``): blocks without
    one, markers without a block, a NAME used twice, a NAME no test mentions as a string."""
    found: list[str] = []
    named: dict[str, Block] = {}
    sources = test_sources() if sources is None else sources
    for path in doc_files() if files is None else files:
        blocks, wrong = parse(path)
        found += wrong
        for b in blocks:
            if b.run is None:
                continue
            if b.run in named:
                found.append(f"{b.where}: the NAME {b.run!r} is also used at {named[b.run].where}")
                continue
            named[b.run] = b
            if f'"{b.run}"' not in sources and f"'{b.run}'" not in sources:
                found.append(f"{b.where}: <!-- run: {b.run} --> but no test under tests/ names {b.run!r}")
    return found


# ---- running blocks as a reader would --------------------------------------------------------


def reader_env(where: Path, **extra: str) -> dict[str, str]:
    """The environment of a reader who ran ``source .venv/bin/activate``: ``order-system`` and
    ``python`` on PATH, both this interpreter (wrappers written into ``where``), plus ``extra``."""
    bin_dir = where / "reader-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, command in (("order-system", f"{sys.executable} -m order_system"), ("python", sys.executable)):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def run_bash(text: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A bash block, from the repository's root, stopping at the first failing command."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` (an ``order-system serve ...`` line of a block) with ``--port``, until /health
    answers 200; stopped with SIGINT afterwards, and its exit code checked (0: a graceful stop)."""
    import httpx

    server = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)  # a starting server has no event to wait on
        yield server
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
