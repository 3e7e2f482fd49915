"""What a new user types, run as they type it: the `axeom` console script from the
folder holding their app, and the messages their mistakes get."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets.sync.client as ws_sync

from tests._processes import ROOT, Server, running_command

EXAMPLES = Path(ROOT) / "examples"


def console_script() -> str:
    """The installed `axeom` command (not `python -m axeom`, which puts the current
    folder on the import path by itself and so hides the README's first failure)."""
    beside = Path(sys.executable).with_name("axeom")
    found = str(beside) if beside.exists() else shutil.which("axeom")
    assert found, "the axeom console script is not installed"
    return found


@contextmanager
def serving(command: list[str], cwd: Path | str) -> Iterator[Server]:
    """Run ``command`` in ``cwd`` (port from AXEOM_PORT=0) until it prints its ready
    line; always stop and reap it."""
    with running_command(command, cwd=cwd, env={"AXEOM_PORT": "0"}) as server:
        yield server


def echo(port: int) -> object:
    with ws_sync.connect(f"ws://127.0.0.1:{port}/chat", open_timeout=5) as client:
        client.send("hi")
        return client.recv(timeout=5)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_readme_first_app_command_from_the_app_folder(tmp_path: Path, workers: str) -> None:
    """`axeom run app:app` in the folder holding app.py serves it, whatever --workers."""
    shutil.copy(EXAMPLES / "echo.py", tmp_path / "app.py")
    command = [console_script(), "run", "app:app", "--workers", workers]
    with serving(command, tmp_path) as server:
        assert echo(server.port) == "Echo: hi"


def test_readme_install_command_serves_the_echo_example() -> None:
    """`axeom run examples/echo.py:app` from the repository root, as the README's first line."""
    with serving([console_script(), "run", "examples/echo.py:app"], ROOT) as server:
        assert echo(server.port) == "Echo: hi"


def test_app_dir_option_and_variable(tmp_path: Path) -> None:
    """--app-dir (and AXEOM_APP_DIR) name the folder to import from, for every child too."""
    folder = tmp_path / "service"
    folder.mkdir()
    shutil.copy(EXAMPLES / "echo.py", folder / "app.py")
    command = [console_script(), "run", "app:app", "--workers", "1", "--app-dir", "service"]
    with serving(command, tmp_path) as server:
        assert echo(server.port) == "Echo: hi"
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


def run_here(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``axeom ARGS`` in ``cwd`` to completion (commands that must fail or end fast)."""
    return subprocess.run(
        [console_script(), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


MISSPELLED_KEYWORD = """\
from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


def on_message(ws, msg):
    ws.send(msg)


app.ws("/chat", messages=on_message)
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_misspelled_handler_keyword_is_one_line_at_the_users_line(
    tmp_path: Path, workers: str
) -> None:
    """`messages=` stops `axeom run` with one line naming the user's file and line,
    did-you-mean included, and exit status 3 in every mode."""
    (tmp_path / "app.py").write_text(MISSPELLED_KEYWORD)
    result = run_here(tmp_path, "run", "app:app", "--port", "0", "--workers", workers)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert "unknown handler or option 'messages' (did you mean 'message'?)" in errors[0]
    assert f"{tmp_path / 'app.py'}, line 11" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


MISSPELLED_METHOD = """\
from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


@app.ws("/chat")
class Chat:
    def open(self, ws):
        ws.send("hello")

    def mesage(self, ws, msg):
        ws.send(msg)
"""


def test_misspelled_handler_method_is_reported_at_startup(tmp_path: Path) -> None:
    """A handler class with `mesage` beside `open` serves, but says so at startup,
    pointing at the user's registration line."""
    (tmp_path / "app.py").write_text(MISSPELLED_METHOD)
    with serving([console_script(), "run", "app:app"], tmp_path) as server:
        with ws_sync.connect(f"ws://127.0.0.1:{server.port}/chat", open_timeout=5) as client:
            assert client.recv(timeout=5) == "hello"
        printed = server.text()
    assert f"{tmp_path / 'app.py'}:7: UserWarning" in printed
    assert "'mesage' is not a handler" in printed
    assert "did you mean 'message'?" in printed


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    """AXEOM_WORKERS=abc is reported as AXEOM_WORKERS, not as a flag never typed."""
    result = run_here(tmp_path, "run", "app:app", env={"AXEOM_WORKERS": "abc"})
    assert result.returncode == 2
    assert "Invalid value for AXEOM_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr
    flag = run_here(tmp_path, "run", "app:app", "--workers", "abc")
    assert "Invalid value for '--workers'" in flag.stderr


def test_env_option_error_names_the_variable_unit() -> None:
    """The option class behind every AXEOM_<NAME>: its error hint is the variable when
    the value came from the environment, the flag when it was typed."""
    from click.testing import CliRunner

    from axeom.cli import main

    runner = CliRunner()
    from_env = runner.invoke(main, ["run", "app:app"], env={"AXEOM_GRACEFUL_TIMEOUT": "-1"})
    assert from_env.exit_code == 2
    assert "Invalid value for AXEOM_GRACEFUL_TIMEOUT" in from_env.output
    typed = runner.invoke(main, ["run", "app:app", "--graceful-timeout", "-1"])
    assert "Invalid value for '--graceful-timeout'" in typed.output


def test_import_error_inside_axeom_is_located_at_the_users_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised by Axeom's code on the app's behalf is reported at the app's
    line that made the call, not at Axeom's own file."""
    from axeom._importer import ImportFromStringError, import_from_string

    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "axeom_test_misspelled.py"
    path.write_text(MISSPELLED_KEYWORD)
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(f"{path}:app")
    assert f"({path}, line 11)" in str(info.value)
    sys.modules.pop("axeom_test_misspelled", None)
