"""Notebook 06 opened in real JupyterLab before anything runs shows its saved widgets, not text.

JupyterLab renders widget outputs only in notebooks the user trusts; ``scripts/tutorial`` runs
``jupyter trust`` on the tutorial's notebooks before it starts JupyterLab, and so does this test
(on copies, with JupyterLab's own folders, as in test_jupyterlab.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import real_lab
from test_jupyterlab import CHROMIUM, CHROMIUM_ARGS, sync_api

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def trusted_lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on copies of the notebooks, trusted as scripts/tutorial trusts them; its URL."""
    with real_lab.jupyterlab(tmp_path, trusted=True) as url:
        yield url


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
