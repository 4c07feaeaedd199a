"""The package's public surface: what `import order_system` offers, and that importing connects to nothing."""

from __future__ import annotations

import subprocess
import sys

import order_system


def test_public_names_are_exactly_all() -> None:
    public = {name for name in dir(order_system) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(order_system, name)).__name__ == "module"}
    assert public - modules == set(order_system.__all__)
    assert all(hasattr(order_system, name) for name in order_system.__all__)


def test_import_works_in_a_plain_script_and_opens_no_connection() -> None:
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('a connection was opened at import time')\n"
        "socket.socket.connect = refuse\n"
        "import order_system\n"
        "print(order_system.OrderEvent.created('abc12345', 'c-1').status.value)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CREATED"
