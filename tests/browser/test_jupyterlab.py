"""The notebooks as a learner meets them: real JupyterLab, driven by a real (headless) Chromium.

JupyterLab runs on a free port, token-less, with its own settings and runtime folders, on copies
of the notebooks (so nothing is saved into the repository). Chromium is Debian's
(``scripts/setup-env`` installs it when it can); PyPI's Playwright cannot download browsers here.
Without Chromium or Playwright the tests are skipped with the reason, shown in pytest's summary.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import real_lab

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("ORDER_SYSTEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PROMPTS = "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]"
SOME_QUEUED = f"() => ({PROMPTS})().some(p => p.textContent.includes('[*]'))"
ALL_RAN = f"() => ({PROMPTS})().length > 0 && ({PROMPTS})().every(p => /\\[\\d+\\]/.test(p.textContent))"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: the real-browser tests need it (as root, scripts/setup-env installs "
                "it with apt-get; or `apt-get install chromium`)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/setup-env")


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab serving copies of the notebooks; its URL."""
    with real_lab.jupyterlab(tmp_path_factory.mktemp("jupyterlab")) as url:
        yield url


@pytest.fixture
def page(jupyterlab: str) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def run_all(page, jupyterlab: str, notebook: str) -> None:  # type: ignore[no-untyped-def]
    """Open ``notebook`` and choose Run → Run All Cells, as a learner would; wait until every cell ran."""
    page.goto(f"{jupyterlab}/lab/tree/notebooks/{notebook}")
    page.locator(".jp-NotebookPanel .jp-Notebook-cell").first.wait_for()
    _wait_for_kernel(jupyterlab, notebook)
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for()  # the page is connected to it
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(SOME_QUEUED, timeout=15_000)  # the committed outputs' prompts are replaced
    page.wait_for_function(ALL_RAN, timeout=90_000)
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").first.inner_text()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()


def _wait_for_kernel(jupyterlab: str, notebook: str, timeout: float = 60.0) -> None:
    """Wait until the server has started an idle kernel for ``notebook`` (Run All before that asks
    which kernel to start)."""
    from urllib.request import urlopen

    deadline = time.monotonic() + timeout
    while True:
        with urlopen(f"{jupyterlab}/api/sessions", timeout=10) as answer:
            sessions = json.loads(answer.read())
        if any(s["path"].endswith(notebook) and s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        assert time.monotonic() < deadline, f"no idle kernel for {notebook}: {sessions}"
        time.sleep(0.2)  # the kernel starts in another process


def _delete_notebook_topics(page) -> None:  # type: ignore[no-untyped-def]
    """Delete the topics a notebook created (its first cell names them), in case it did not."""
    from order_system.config import Settings
    from order_system.kafka.topics import delete_topics

    text = "\n".join(page.locator(".jp-OutputArea").all_inner_texts())
    for topic in re.findall(r"this notebook's topic is (\S+)", text):
        own = Settings.from_env().with_topic(topic)
        delete_topics(own, list(own.all_topics))


def test_dashboard_buttons_advance_an_order_after_run_all(page, jupyterlab: str) -> None:  # type: ignore[no-untyped-def]
    expect = sync_api.expect
    run_all(page, jupyterlab, "06-interactive.ipynb")
    try:
        output = page.locator(".jp-OutputArea")
        status = output.locator(".order-status").first
        for label, shown in (("Create", "CREATED"), ("Pay", "PAID"), ("Ship", "SHIPPED"), ("Deliver", "DELIVERED")):
            button = output.locator("button.widget-button", has_text=re.compile(rf"^\s*{label}\s*$")).first
            expect(button).to_be_enabled(timeout=30_000)
            button.click()
            expect(status).to_contain_text(re.compile(rf"\b{shown}\b"), timeout=30_000)
        expect(output.locator("button.widget-button", has_text=re.compile(r"^\s*Cancel\s*$")).first).to_be_disabled()
    finally:
        _delete_notebook_topics(page)


def test_keys_notebook_chart_renders(page, jupyterlab: str) -> None:  # type: ignore[no-untyped-def]
    run_all(page, jupyterlab, "02-keys-and-partitions.ipynb")
    charts = page.locator(".jp-OutputArea-output img[src^='data:image/png']")
    sync_api.expect(charts.first).to_be_visible()
    sizes = charts.evaluate_all("images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes and all(done and width > 100 and height > 50 for done, width, height in sizes), sizes
