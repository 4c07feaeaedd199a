"""`./scripts/tutorial` as a learner runs it: as root too, and tidy when JupyterLab fails."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary

from order_system.local.broker import LocalBroker
from order_system.config import Settings
from order_system.kafka.topics import delete_topics

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = str(ROOT / "scripts" / "tutorial")
BAD_JUPYTER_ARGUMENT = "--ServerApp.port=not-a-port"  # JupyterLab refuses to start with it


def tutorial(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUTORIAL, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tutorial_starts_jupyterlab_even_as_root_and_passes_arguments(settings: Settings, unique: Callable[[str], str],
                                                                      free_port: int) -> None:
    topic = unique("tutorial")
    env = {**os.environ, "ORDER_SYSTEM_TOPIC": topic}
    process = subprocess.Popen([TUTORIAL, "--no-browser", f"--port={free_port}", "--ServerApp.token="], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if f"127.0.0.1:{free_port}/lab" in line or f"localhost:{free_port}/lab" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(180), "".join(lines)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the session this test started: the script and JupyterLab
        process.wait(timeout=60)
        reader.join(timeout=10)
        delete_topics(settings.with_topic(topic), list(settings.with_topic(topic).all_topics))
    output = "".join(lines)
    if os.geteuid() == 0:
        assert "Running as root: passing --allow-root to JupyterLab." in output
    assert "Running as root is not recommended" not in output
    assert LocalBroker.for_settings(settings).status().reachable  # the broker it found keeps running
    # the notebooks are trusted, so JupyterLab shows 06's saved widgets before anything runs
    notary = NotebookNotary()
    assert notary.check_signature(nbformat.read(ROOT / "notebooks" / "06-interactive.ipynb", as_version=4))


def test_a_broker_that_was_already_running_is_left_alone_when_jupyterlab_fails(settings: Settings,
                                                                              unique: Callable[[str], str]) -> None:
    topic = unique("tutorial")
    try:
        done = tutorial({**os.environ, "ORDER_SYSTEM_TOPIC": topic}, BAD_JUPYTER_ARGUMENT)
    finally:
        delete_topics(settings.with_topic(topic), list(settings.with_topic(topic).all_topics))
    assert done.returncode != 0
    assert "JupyterLab exited with status" in done.stderr
    assert "Stopping the Kafka broker" not in done.stderr
    assert LocalBroker.for_settings(settings).status().reachable


@pytest.mark.slow
def test_the_broker_the_script_started_is_stopped_when_jupyterlab_fails(free_port: int) -> None:
    broker = LocalBroker(port=free_port)
    try:
        done = tutorial({**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}, BAD_JUPYTER_ARGUMENT)
        assert done.returncode != 0, done.stdout + done.stderr
        assert "Stopping the Kafka broker this script started" in done.stderr, done.stdout + done.stderr
        assert "stopped the broker (pid" in done.stderr
        assert broker.status().state == "stopped"
    finally:
        broker.stop()
        broker.purge()
