"""The package's import structure: every module imports on its own, and no modules import each
other in a circle (counting imports inside functions and under ``TYPE_CHECKING`` too: a circle
hidden there is still one)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "order_system"


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package of order_system."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The order_system modules that module ``name`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "order_system"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "order_system":
                base = node.module or ""
            else:
                continue
            # ``from .pkg import module`` names a module; ``from .module import name`` a name in it
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {t for t in targets if t != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the order_system modules it imports; the packages' ``__init__`` re-exports left out."""
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items() if path.name != "__init__.py"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle of the graph once, as a path that starts and ends at the same module."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in path:
                circle = path[path.index(target):] + [target]
                if not any(set(circle) == set(c) for c in found):
                    found.append(circle)
            elif target not in done:
                visit(target, path + [target])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return found


def test_the_walker_sees_relative_imports_and_finds_a_planted_circle() -> None:
    graph = import_graph()
    assert "order_system.kafka.records" in graph["order_system.kafka.consumer"]  # from .records import ...
    assert ("order_system.kafka.reachability"
            in graph["order_system.local.broker"])  # from ..kafka.reachability import ...
    assert "order_system.domain.events" in graph["order_system.kafka.records"]
    planted = {**graph,
               "order_system.domain.events": graph["order_system.domain.events"] | {"order_system.kafka.consumer"}}
    assert any("order_system.domain.events" in circle for circle in cycles(planted))


def test_no_module_imports_the_package_itself() -> None:
    """``from order_system import X`` inside the package would pull every module in: import X's module."""
    offenders = sorted(name for name, targets in import_graph().items() if "order_system" in targets)
    assert offenders == []


def test_the_package_has_no_import_circle() -> None:
    found = cycles(import_graph())
    assert found == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    """Each module first, alone: an import that works only after another module was loaded fails.

    One child interpreter loads the third-party libraries once, then forks a process per module,
    which imports that one module with no order_system module loaded yet.
    """
    names = sorted(name for name in modules()
                   if name not in ("order_system", "order_system.__main__"))  # __main__ runs the CLI
    script = textwrap.dedent("""
        import importlib, os, sys
        names = sys.argv[1:]
        for lib in ("pandas", "confluent_kafka", "pydantic", "pydantic_core", "fastapi", "uvicorn",
                    "prometheus_client", "matplotlib", "httpx"):
            try:
                importlib.import_module(lib)
            except ImportError:
                pass
        assert not [m for m in sys.modules if m.split(".")[0] == "order_system"]
        failed = []
        for name in names:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException as exc:
                    print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failed.append(name)
        print("failed:", failed)
        sys.exit(1 if failed else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(names) > 30 and "order_system.kafka.retry" in names
