"""Real JupyterLab for the browser tests: on a free port, token-less, with folders of its own.

It serves copies of the notebooks (so nothing is saved into the repository); ``trusted``
runs ``jupyter trust`` on them first, as ``scripts/tutorial`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {  # JupyterLab user settings for the run: every cell in the page, nothing saved, no news
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urlopen(f"{url}/api/status", timeout=2) as answer:
            return answer.status == 200
    except (URLError, OSError):
        return False


@contextmanager
def jupyterlab(home: Path, trusted: bool = False) -> Iterator[str]:
    """JupyterLab serving copies of the notebooks under ``home``; yields its URL."""
    work = home / "work"
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    for name, values in SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data")}
    if trusted:
        notebooks = [str(path) for path in (work / "notebooks").glob("*.ipynb")]
        done = subprocess.run([sys.executable, "-m", "jupyter", "trust", *notebooks],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={work}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = home / "jupyterlab.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not answers(url):
                assert server.poll() is None, f"JupyterLab ended:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"JupyterLab did not answer:\n{log_path.read_text()}"
                time.sleep(0.2)  # another process: nothing local to wait on
            yield url
        finally:
            server.terminate()  # shuts the kernels down too
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
