"""scripts/repeat-test: the counts and the figure distribution it reports are the runs' own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# passes on its first run, fails on its second (a counter file beside it); prints its figure each run
FLAKY = '''
from pathlib import Path

def test_figure():
    runs = Path(__file__).with_name("runs")
    n = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(n))
    print(f"\\nFIGURE run={n} worst={1.5 * n:.2f}s")
    assert n == 1, f"run {n}: FIGURE worst={1.5 * n:.2f}s"
'''


def test_repeat_test_counts_runs_and_reads_each_figure_once(tmp_path: Path) -> None:
    test = tmp_path / "test_flaky_figure.py"
    test.write_text(FLAKY)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "repeat-test"), "-n", "2", "--figure", "worst",
                           "--bound", "2", "--echo", "FIGURE", "--logs", str(tmp_path / "logs"), str(test)],
                          capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 of 2 passed, 1 failed" in out, out
    # the failure message quotes the figure again: it is still one value per run
    assert "worst: min 1.50, median 2.25, p90 3.00, max 3.00 (2 values)" in out, out
    assert "runs above the bound 2: 1" in out, out
    assert "FIGURE run=1 worst=1.50s" in out and "FIGURE run=2 worst=3.00s" in out, out
    kept = list((tmp_path / "logs").iterdir())
    assert len(kept) == 1 and "run 2: FIGURE worst=3.00s" in kept[0].read_text()
