"""Layers point down only, in the order docs/architecture.md gives; no module over 400 lines; and
importing the domain loads no Kafka client, no pandas and no Prometheus."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "order_system"
MAX_LINES = 400


def layer_order() -> list[str]:
    """The layers, lowest first: the text block after the marker in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"read by tests/unit/test_layers.py -->\n```text\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md lost its layer list"
    return block.group(1).split()


def layer_of(module: str, order: list[str]) -> str | None:
    """``order_system.kafka.producer`` -> ``kafka``; ``order_system.bootstrap`` -> ``bootstrap``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in order else None


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every order_system import in the file, relative ones resolved."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "order_system"]


def upward_imports(order: list[str], root: Path = ROOT) -> list[str]:
    rank = {layer: n for n, layer in enumerate(order)}
    wrong = []
    for path in sorted((root / "order_system").rglob("*.py")):
        here = layer_of(".".join(path.relative_to(root).with_suffix("").parts), order)
        if here is None:
            continue
        for line, target in imports(path, root):
            there = layer_of(target, order)
            if there is not None and rank[there] > rank[here]:
                wrong.append(f"{path.relative_to(root)}:{line} ({here}) imports {target} ({there})")
    return wrong


def test_the_documented_order_names_every_layer_once() -> None:
    order = layer_order()
    assert len(order) == len(set(order)) == 8
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    assert set(order) == folders | modules, "a package or top-level module outside the documented layers"


def test_no_import_points_up() -> None:
    assert upward_imports(layer_order()) == []


def test_the_check_finds_planted_upward_imports(tmp_path: Path) -> None:
    for folder in ("domain", "kafka", "state"):
        (tmp_path / "order_system" / folder).mkdir(parents=True)
    (tmp_path / "order_system" / "domain" / "events.py").write_text("from ..kafka.producer import OrderProducer\n")
    (tmp_path / "order_system" / "kafka" / "producer.py").write_text("import order_system.state.view\nx = 1\n")
    (tmp_path / "order_system" / "state" / "view.py").write_text("from ..domain import events\n")  # down: fine
    assert upward_imports(layer_order(), tmp_path) == [
        "order_system/domain/events.py:1 (domain) imports order_system.kafka.producer (kafka)",
        "order_system/kafka/producer.py:1 (kafka) imports order_system.state.view (state)"]


def test_no_module_is_longer_than_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_the_domain_loads_no_kafka_client_pandas_or_prometheus() -> None:
    script = ("import sys, order_system.domain.state_machine, order_system.domain.events\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'confluent_kafka', 'pandas', 'prometheus_client',"
              " 'fastapi'}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
