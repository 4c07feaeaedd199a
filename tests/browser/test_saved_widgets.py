"""Notebook 06 opened in real JupyterLab before anything runs shows its saved widgets, not text.

JupyterLab renders widget outputs only in notebooks the user trusts; ``scripts/tutorial`` runs
``jupyter trust`` on the tutorial's notebooks before it starts JupyterLab, and so does this test
(on copies, with JupyterLab's own folders, as in test_jupyterlab.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_jupyterlab import CHROMIUM, CHROMIUM_ARGS, ROOT, SETTINGS, _answers, _free_port, sync_api

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def trusted_lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on copies of the notebooks, trusted as scripts/tutorial trusts them; its URL."""
    work = tmp_path / "work"
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    for name, values in SETTINGS.items():
        path = tmp_path / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    trusted = subprocess.run([sys.executable, "-m", "jupyter", "trust", *map(str, (work / "notebooks").glob("*.ipynb"))],
                             env=env, capture_output=True, text=True, timeout=60)
    assert trusted.returncode == 0, trusted.stderr
    port = _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={work}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(url):
            assert server.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.2)  # another process: nothing local to wait on
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_dashboard_shows_as_widgets_before_the_notebook_runs(trusted_lab: str) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{trusted_lab}/lab/tree/notebooks/06-interactive.ipynb")
            output = page.locator(".jp-NotebookPanel .jp-OutputArea")
            output.first.wait_for(timeout=60_000)
            create = output.locator("button.widget-button", has_text=re.compile(r"^\s*Create\s*$")).first
            sync_api.expect(create).to_be_visible(timeout=60_000)
            sync_api.expect(output.locator(".order-status").first).to_contain_text("No order selected")
            assert "VBox(children" not in "\n".join(output.all_inner_texts())
        finally:
            browser.close()
