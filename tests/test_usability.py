"""What a new user types, run as they type it: the `axeom` console script from the
folder holding their app, and the messages their mistakes get."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets.sync.client as ws_sync

from tests._processes import READY, ROOT, stop

EXAMPLES = Path(ROOT) / "examples"


def console_script() -> str:
    """The installed `axeom` command (not `python -m axeom`, which puts the current
    folder on the import path by itself and so hides the README's first failure)."""
    beside = Path(sys.executable).with_name("axeom")
    found = str(beside) if beside.exists() else shutil.which("axeom")
    assert found, "the axeom console script is not installed"
    return found


@contextmanager
def serving(command: list[str], cwd: Path | str, timeout: float = 20.0) -> Iterator[int]:
    """Run ``command`` in ``cwd`` (port from AXEOM_PORT=0) until it prints its ready line;
    yield the port; always stop and reap it."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "AXEOM_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()
    ports: list[int] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = READY.search(line)
            if match and not ports:
                ports.append(int(match.group(2)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or not ports:
            raise AssertionError(f"{command} did not become ready:\n{''.join(output)}")
        yield ports[0]
    finally:
        stop(proc)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def echo(port: int) -> object:
    with ws_sync.connect(f"ws://127.0.0.1:{port}/chat", open_timeout=5) as client:
        client.send("hi")
        return client.recv(timeout=5)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_readme_first_app_command_from_the_app_folder(tmp_path: Path, workers: str) -> None:
    """`axeom run app:app` in the folder holding app.py serves it, whatever --workers."""
    shutil.copy(EXAMPLES / "echo.py", tmp_path / "app.py")
    command = [console_script(), "run", "app:app", "--workers", workers]
    with serving(command, tmp_path) as port:
        assert echo(port) == "Echo: hi"


def test_readme_install_command_serves_the_echo_example() -> None:
    """`axeom run examples/echo.py:app` from the repository root, as the README's first line."""
    with serving([console_script(), "run", "examples/echo.py:app"], ROOT) as port:
        assert echo(port) == "Echo: hi"


def test_app_dir_option_and_variable(tmp_path: Path) -> None:
    """--app-dir (and AXEOM_APP_DIR) name the folder to import from, for every child too."""
    folder = tmp_path / "service"
    folder.mkdir()
    shutil.copy(EXAMPLES / "echo.py", folder / "app.py")
    command = [console_script(), "run", "app:app", "--workers", "1", "--app-dir", "service"]
    with serving(command, tmp_path) as port:
        assert echo(port) == "Echo: hi"
    env = {**os.environ, "AXEOM_APP_DIR": str(tmp_path / "missing")}
    result = subprocess.run(
        [console_script(), "run", "app:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
