"""Every fenced block of the documentation is run by a test or says why not (no broker needed).

The markers and the checker are in tests/doc_blocks.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_blocks import ROOT, block, doc_files, parse, problems

LAYERS = ["domain", "config", "kafka", "state", "services", "bootstrap", "local", "interfaces"]


def test_every_block_is_marked_named_once_and_used_by_a_test() -> None:
    found = problems()
    assert not found, "\n".join(found)


def test_the_documents_are_the_readme_the_docs_and_the_benchmarks_readme() -> None:
    names = {str(p.relative_to(ROOT)) for p in doc_files()}
    assert {"README.md", "benchmarks/README.md", "docs/architecture.md", "docs/rest-api.md"} <= names


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 300


def test_the_readme_keeps_the_test_command_ci_runs() -> None:
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
    two_commands = next(b for b in parse(ROOT / "README.md")[0] if "./scripts/tutorial" in b.text)
    assert any(line.split("#")[0].strip() == "./scripts/test" for line in two_commands.text.splitlines())


def test_the_layer_order_is_a_list_a_test_can_read() -> None:
    marked = [b for b in parse(ROOT / "docs" / "architecture.md")[0]
              if b.reason == "the layer order, read by tests/unit/test_layers.py"]
    assert len(marked) == 1
    assert marked[0].text.splitlines() == LAYERS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_a_block_without_a_marker_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "Some text.\n\n```bash\necho hi\n```\n")
    assert [p.split(": ", 1)[1] for p in problems([path], sources="")] == [
        "a ```bash block without a marker on the line before it (<!-- run: NAME --> or <!-- not run: REASON -->)"]


def test_a_marker_must_be_on_the_line_right_before_the_block(tmp_path: Path) -> None:
    path = write(tmp_path, "<!-- not run: a diagram -->\n\n```mermaid\nflowchart LR\n```\n")
    found = problems([path], sources="")
    assert len(found) == 2 and "no fenced block right after it" in found[0] and "without a marker" in found[1]


def test_a_name_no_test_uses_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "<!-- run: never-run -->\n```bash\necho hi\n```\n")
    assert problems([path], sources='block("other-name")') == [
        f"{path}:2: <!-- run: never-run --> but no test under tests/ names 'never-run'"]
    assert problems([path], sources='block("never-run", "doc.md")') == []


def test_a_repeated_name_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "<!-- run: twice -->\n```bash\necho 1\n```\n\n<!-- run: twice -->\n```bash\necho 2\n```\n")
    found = problems([path], sources='"twice"')
    assert len(found) == 1 and "the NAME 'twice' is also used at" in found[0]


def test_malformed_markers_and_unclosed_blocks_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "<!-- run: Not A Name -->\n```bash\necho hi\n```\n\n"
                           "<!-- not run: sample -->\n```text\nno end\n")
    found = problems([path], sources="")
    assert any("a malformed marker" in p for p in found)
    assert any("never closed" in p for p in found)


def test_not_run_blocks_need_a_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "<!-- not run: -->\n```bash\necho hi\n```\n")
    assert problems([path], sources="")  # malformed marker, so the block has none


def test_block_returns_the_named_block_dedented(tmp_path: Path) -> None:
    text = "- a list item:\n\n  <!-- run: in-a-list -->\n  ```python\n  print(1)\n    print(2)\n  ```\n"
    blocks, wrong = parse(write(tmp_path, text))
    assert not wrong and [b.text for b in blocks] == ["print(1)\n  print(2)\n"]
    with pytest.raises(LookupError):
        block("no-such-block")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (outside fenced blocks)."""
    import re

    anchors, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_and_their_anchors_exist() -> None:
    import re

    broken = []
    for path in doc_files():
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
