"""`axeom run` as a real subprocess, and the user-facing errors of the CLI."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import trio
import websockets.sync.client as ws_sync

from axeom.testing import TestClient, open_client
from tests._processes import run_axeom, running_axeom

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_run_serves_the_echo_example() -> None:
    """`axeom run examples/echo.py:app --port 0` prints its address and echoes."""
    with running_axeom("examples/echo.py:app", "--port", "0") as server:
        assert server.output[0].strip() == f"Axeom listening on ws://127.0.0.1:{server.port}"
        async with open_client(f"{server.url}/chat") as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"


async def test_chat_example_two_users_one_room() -> None:
    """In examples/chat.py a message reaches everyone in the room, tagged with the user."""
    with running_axeom("examples/chat.py:app", "--port", "0") as server, trio.fail_after(20):
        url = f"{server.url}/chat/lobby"
        async with open_client(url, {"x-user": "ann"}) as ann:
            assert await ann.receive() == "* ann joined lobby"
            async with open_client(url, {"x-user": "bob"}) as bob:
                assert await bob.receive() == "* bob joined lobby"
                assert await ann.receive() == "* bob joined lobby"
                await ann.send("hello")
                assert [await ann.receive(), await bob.receive()] == ["ann: hello"] * 2


async def test_testkit_snippet_against_echo_example() -> None:
    """The README's test-kit snippet works as written against examples/echo.py."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from echo import app
    finally:
        sys.path.remove(str(EXAMPLES))
    async with TestClient(app) as client:
        async with client.websocket("/chat?room=1", headers={"x-user": "ann"}) as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nocolon", 'Import string "nocolon" must be in format'),
        ("no_such_module_xyz:app", 'Could not import module "no_such_module_xyz"'),
        ("examples/echo.py:nope", 'Attribute "nope" not found'),
        ("examples/missing.py:app", "no such file"),
        ("examples/echo.py:log", "not an Axeom app"),
    ],
)
def test_bad_import_is_one_line_and_exit_3(target: str, expected: str) -> None:
    """A bad import string is a one-line error with exit status 3 (the app failed to
    load, as with --workers N), no traceback."""
    result = run_axeom("run", target, "--port", "0")
    assert result.returncode == 3
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_app_that_raises_on_import(tmp_path: Path) -> None:
    """An app whose module raises names the error and the line, in one line."""
    broken = tmp_path / "broken.py"
    broken.write_text("import os\n\nvalue = 1 / 0\n")
    result = run_axeom("run", f"{broken}:app")
    assert result.returncode == 3
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    """Listening on a taken port fails with one readable line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_axeom("run", "examples/echo.py:app", "--port", str(port))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_option_is_a_usage_error() -> None:
    """A bad option value is a click usage error (exit 2), not a traceback."""
    result = run_axeom("run", "examples/echo.py:app", "--port", "99999")
    assert result.returncode == 2
    assert "Invalid value for '--port'" in result.stderr


def test_sigterm_drains_the_single_process_server() -> None:
    """--workers 0 on SIGTERM: clients get 1001, close handlers run, exit 0."""
    import os
    import signal

    from websockets.exceptions import ConnectionClosed

    with running_axeom("examples/echo.py:app", "--port", "0") as server:
        with ws_sync.connect(f"{server.url}/chat", open_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "Echo: hi"
            os.kill(server.proc.pid, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert server.proc.wait(timeout=15) == 0
        assert "close " in server.text() and "(1001 server shutting down)" in server.text()


def test_status_and_publish_reach_the_single_process_server() -> None:
    """--workers 0 answers `axeom status` and `axeom publish` on its control socket."""
    with running_axeom("tests/apps/pubsub_app.py:app", "--port", "0") as server:
        port = str(server.port)
        with ws_sync.connect(f"{server.url}/sub/news", open_timeout=5) as ws:
            ws.send("count")
            assert ws.recv(timeout=5) == "R:1"
            result = run_axeom("publish", "news", "extra!", "--port", port)
            assert result.returncode == 0, result.stderr
            assert ws.recv(timeout=5) == "extra!"
            text = run_axeom("status", "--port", port).stdout
            assert "server" in text and "sockets open: 1" in text
            assert "pub/sub topics: 1" in text
            # One process: it is the server, not a supervisor.
            assert f"(pid {server.proc.pid}, " in text and "supervisor" not in text
