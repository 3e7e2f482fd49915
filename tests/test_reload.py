"""``axeom run --reload``: an edit under a running server restarts what runs the app.

Real servers on loopback, an app file in a temporary folder edited while they run. Each
edit keeps the file's size (``v1`` -> ``v2``) on purpose: that is the edit a stale
bytecode cache would hide.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync import client as ws_sync

from axeom.reload import SourceFilter, watched_folders
from tests._processes import ROOT, Server, run_axeom, running_axeom, wait_for

APP = """\
import sys

from axeom import Axeom
from axeom.ws import ws_plugin

sys.path.insert(0, {lib!r})
from prefix import PREFIX  # noqa: E402

VERSION = "v1"

app = Axeom().use(ws_plugin())
app.ws("/echo", message=lambda ws, msg: ws.send(f"{{PREFIX}}{{VERSION}}: {{msg}}"))
"""
VERSION_LINE = APP.splitlines().index('VERSION = "v1"') + 1

# Seconds for a reload to be seen: a roll of two workers starts three interpreters,
# and this machine runs other tests at the same time.
RELOAD_DEADLINE = 60.0
# The wall-clock limit of a test that starts a server and reloads it a few times.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    """``app.py`` in its own folder, importing ``prefix`` from a sibling ``lib`` folder."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "prefix.py").write_text('PREFIX = ""\n')
    folder = tmp_path / "app"
    folder.mkdir()
    path = folder / "app.py"
    path.write_text(APP.format(lib=str(lib)))
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@contextmanager
def reloading(app_file: Path, *args: str) -> Iterator[Server]:
    with running_axeom(
        f"{app_file}:app", "--port", "0", "--reload", *args, ready_timeout=60
    ) as server:
        yield server


def connect(server: Server) -> ws_sync.ClientConnection:
    return ws_sync.connect(f"{server.url}/echo", open_timeout=20)


def ask(ws: ws_sync.ClientConnection, text: str = "hi") -> str:
    ws.send(text)
    reply = ws.recv(timeout=20)
    assert isinstance(reply, str)
    return reply


def answer_of_a_new_connection(server: Server) -> str:
    try:
        with connect(server) as ws:
            return ask(ws)
    except (OSError, ConnectionClosed, TimeoutError):
        return ""  # between two processes: ask again


def wait_for_answer(server: Server, expected: str) -> None:
    wait_for(
        lambda: answer_of_a_new_connection(server) == expected,
        RELOAD_DEADLINE,
        f"a new connection to answer {expected!r}",
        output=server.text,
    )


def closed_with(ws: ws_sync.ClientConnection) -> int | None:
    """The close code the server sent this client (waiting for it)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=RELOAD_DEADLINE)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


MODES = [
    pytest.param(("--workers", "0"), id="w0"),
    pytest.param(("--workers", "2"), id="w2"),
]


@pytest.mark.parametrize("mode", MODES)
def test_an_edit_closes_sockets_with_1012_and_serves_the_new_code(
    app_file: Path, mode: tuple[str, ...]
) -> None:
    """Saving a .py file of the app: a connected client gets 1012 (service restart),
    and a new connection runs the edited code."""
    with reloading(app_file, *mode) as server, connect(server) as ws:
        assert ask(ws) == "v1: hi"
        edit(app_file, '"v1"', '"v2"')
        assert closed_with(ws) == 1012
        wait_for_answer(server, "v2: hi")


def test_asyncio_reloads_on_an_edit_in_a_reload_dir(app_file: Path) -> None:
    """--loop asyncio --workers 0: an edit of a module in a --reload-dir (outside the app's
    folder) restarts the server too, 1012 to the connected client."""
    lib = app_file.parent.parent / "lib"
    with (
        reloading(
            app_file, "--workers", "0", "--loop", "asyncio", "--reload-dir", str(lib)
        ) as server,
        connect(server) as ws,
    ):
        assert ask(ws) == "v1: hi"
        edit(lib / "prefix.py", 'PREFIX = ""', 'PREFIX = "+"')
        assert closed_with(ws) == 1012
        wait_for_answer(server, "+v1: hi")


@pytest.mark.parametrize("mode", MODES)
def test_an_edit_that_does_not_import_keeps_the_old_code_and_is_reported_once(
    app_file: Path, mode: tuple[str, ...]
) -> None:
    """A syntax error, then an exception at import: the server goes on with the last good
    code (the open socket too), each error is printed once, as one line at the user's
    file and line; fixing the file reloads."""
    with reloading(app_file, *mode) as server, connect(server) as ws:
        assert ask(ws) == "v1: hi"
        edit(app_file, '"v1"', '"v2')
        syntax = f"SyntaxError: unterminated string literal (detected at line {VERSION_LINE})"
        wait_for(lambda: syntax in server.text(), RELOAD_DEADLINE, "the error", output=server.text)
        assert f"{app_file}, line {VERSION_LINE}" in server.text()
        assert ask(ws) == "v1: hi"  # not restarted
        assert answer_of_a_new_connection(server) == "v1: hi"
        edit(app_file, '"v2', '"v2"\nraise RuntimeError("no database")')
        raised = f"RuntimeError: no database ({app_file}, line {VERSION_LINE + 1})"
        wait_for(lambda: raised in server.text(), RELOAD_DEADLINE, "the error", output=server.text)
        assert ask(ws) == "v1: hi"
        edit(app_file, 'raise RuntimeError("no database")', "")
        assert closed_with(ws) == 1012
        wait_for_answer(server, "v2: hi")
        text = server.text()
        assert text.count("SyntaxError") == 1, text
        assert text.count("no database") == 1, text
        assert "Traceback" not in text, text


def test_axeom_reload_restarts_a_single_process_server_with_reload(app_file: Path) -> None:
    """``axeom reload`` against --workers 0 --reload restarts the server process (as an
    edit does); without --reload it says why it cannot, instead of "unknown command"."""
    with reloading(app_file, "--workers", "0") as server, connect(server) as ws:
        assert ask(ws) == "v1: hi"
        result = run_axeom("reload", "--port", str(server.port))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("restarting"), result.stdout
        assert closed_with(ws) == 1012
        wait_for(lambda: server.text().count("Axeom listening") == 2, RELOAD_DEADLINE, "restart")
    with running_axeom(f"{app_file}:app", "--port", "0") as server:
        result = run_axeom("reload", "--port", str(server.port))
        assert result.returncode == 1
        assert "--workers 0" in result.stderr and "--reload" in result.stderr, result.stderr
        assert "unknown command" not in result.stderr


def test_reload_without_watchfiles_is_one_line(app_file: Path, tmp_path: Path) -> None:
    """--reload in an install without watchfiles: a usage error naming the extra."""
    shadow = tmp_path / "shadow" / "watchfiles"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("No module named watchfiles")\n')
    path = os.pathsep.join([str(shadow.parent), ROOT, os.environ.get("PYTHONPATH", "")])

    result = subprocess.run(
        [sys.executable, "-m", "axeom", "run", f"{app_file}:app", "--reload"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "pip install 'axeom[reload]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_reload_dir_that_is_not_a_folder_is_refused(app_file: Path, tmp_path: Path) -> None:
    """A --reload-dir that does not exist: a usage error naming the option."""
    result = run_axeom("run", f"{app_file}:app", "--reload", "--reload-dir", str(tmp_path / "x"))
    assert result.returncode == 2
    assert re.search(r"Invalid value for '--reload-dir'.*does not exist", result.stderr)


# -- what is watched, without processes ---------------------------------------------


def test_source_filter_takes_python_files_only_outside_hidden_and_cache_folders(
    tmp_path: Path,
) -> None:
    """.py files count; other files, __pycache__ and hidden folders below a watched
    folder do not; a watched folder inside a hidden one still counts."""
    from watchfiles import Change

    root = tmp_path / ".local" / "project"
    accepts = SourceFilter([str(root)])
    assert accepts(Change.modified, str(root / "app.py"))
    assert accepts(Change.added, str(root / "pkg" / "views.py"))
    assert not accepts(Change.modified, str(root / "notes.txt"))
    assert not accepts(Change.modified, str(root / "app.pyc"))
    assert not accepts(Change.modified, str(root / "__pycache__" / "app.py"))
    assert not accepts(Change.modified, str(root / ".venv" / "lib" / "x.py"))
    assert not accepts(Change.modified, str(root / ".hidden" / "x.py"))


def test_watched_folders_are_found_without_importing_the_app(tmp_path: Path) -> None:
    """The folder of a file, of a module, of a package (whose __init__ would raise if it
    were imported), then the extra folders, absolute and without repeats."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / "single.py").write_text("raise RuntimeError('imported')\n")
    folder = str(tmp_path)
    assert watched_folders(f"{tmp_path}/single.py:app") == [folder]
    assert watched_folders("single:app", app_dir=folder) == [folder]
    assert watched_folders("shop.api:app", [folder], app_dir=folder) == [str(package), folder]


def test_config_file_keys_and_their_errors(tmp_path: Path) -> None:
    """server.reload and server.reload_dirs come from the file too; a bad value is one
    line with the file, the line and the key."""
    from axeom.config import Config, ConfigError

    config = tmp_path / "axeom.toml"
    config.write_text(f'[server]\nreload = true\nreload_dirs = ["{tmp_path}"]\n')
    server = Config.build("app:app", config).server
    assert server.reload is True and server.reload_dirs == (str(tmp_path),)
    config.write_text(f'[server]\nreload = true\nreload_dirs = ["{tmp_path / "gone"}"]\n')
    with pytest.raises(ConfigError) as error:
        Config.build("app:app", config)
    assert str(error.value).startswith(f"{config}:3: server.reload_dirs must name existing")
    config.write_text('[server]\nreload = "yes"\n')
    with pytest.raises(ConfigError, match=r':2: server.reload must be true or false, got "yes"'):
        Config.build("app:app", config)
