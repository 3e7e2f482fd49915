"""A handler that holds its process's event loop is named in the log (route,
socket, handler, the stack down to the blocking call) before the supervisor
replaces its worker; the hung worker's sockets get 1011, its sibling's stay."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests._processes import Server, running_axeom, wait_for

APP = "tests/apps/ops_app.py:app"
# Generous for a loaded 2-core machine: only a failure takes this long.
DEADLINE = 60.0
HELD = "event loop held for"


def _open(stack: ExitStack, server: Server, path: str) -> tuple[ClientConnection, int]:
    """A socket on ``path`` (closed with ``stack``) and the pid of the process serving it."""
    ws = stack.enter_context(connect(f"{server.url}{path}", open_timeout=DEADLINE))
    greeting = ws.recv(timeout=DEADLINE)
    assert isinstance(greeting, str) and greeting.startswith("pid ")
    return ws, int(greeting.split()[1])


def _check_named(text: str, socket_route: str = "/block") -> None:
    """The warning names the handler, its route and socket, and its stack
    reaches the ``time.sleep`` line of the app."""
    start = text.index(HELD)
    warning = text[start : start + 4000]
    assert "by the message handler ops_app.block of socket" in warning, warning
    assert f"(route {socket_route})" in warning
    assert "time.sleep(float(msg.split()[1]))" in warning


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_a_blocked_loop_is_named_and_its_end_logged(loop: str) -> None:
    """``--workers 0``: a handler that sleeps past ``--block-warning`` is
    logged once with its stack, and again when the loop runs again; the
    watchdog does not hold up a SIGTERM's clean exit."""
    with running_axeom(
        APP, "--port", "0", "--workers", "0", "--loop", loop, "--block-warning", "0.3"
    ) as server:
        with ExitStack() as stack:
            ws, _ = _open(stack, server, "/block")
            ws.send("sleep 1.5")
            assert ws.recv(timeout=DEADLINE) == "done sleep 1.5"
        wait_for(
            lambda: "event loop ran again after being held" in server.text(),
            DEADLINE,
            "the end of the block",
            output=server.text,
        )
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=DEADLINE) == 0
        text = server.text()
    _check_named(text)
    assert text.count(HELD) == 1  # once per episode, not once per check


TREE_CONFIG = """
[workers]
heartbeat_interval = 0.2
heartbeat_timeout = 3.0
block_warning = 0.5

[supervisor]
shutdown_timeout = 4.0

[server]
graceful_timeout = 2.0
"""


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_a_hung_worker_is_named_then_its_sockets_get_1011(tmp_path: Path, loop: str) -> None:
    """``--workers 2``: the handler blocking one worker is named (with the
    ``time.sleep`` line) before the supervisor's missed-heartbeat verdict; the
    socket on the hung worker is closed with 1011 before the worker is
    replaced; a socket on the other worker goes on undisturbed."""
    config = tmp_path / "axeom.toml"
    config.write_text(TREE_CONFIG)
    args = ("--port", "0", "--workers", "2", "--loop", loop, "--config", str(config))
    with running_axeom(APP, *args) as server:
        with ExitStack() as stack:
            hung, hung_pid = _open(stack, server, "/block")
            calm, calm_pid = _open(stack, server, "/calm")  # least loaded: the other worker
            assert calm_pid != hung_pid
            hung.send("sleep 3600")
            with pytest.raises(ConnectionClosed) as closed:
                hung.recv(timeout=DEADLINE)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            calm.send("still there")
            assert calm.recv(timeout=DEADLINE) == "calm still there"
        wait_for(
            lambda: "closed 1 socket(s) with 1011" in server.text(),
            DEADLINE,
            "the hung worker's last line",
            output=server.text,
        )
        text = server.text()
    _check_named(text)
    assert text.index(HELD) < text.index("missed heartbeats")
    assert text.count(HELD) == 1


def _beat_until(watchdog: Any, done: Callable[[], bool]) -> None:
    """Keep the watched (this) thread beating, as a running loop does, until ``done()``."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < deadline, "timed out"
        watchdog.beat()
        time.sleep(0.002)


def test_one_warning_per_episode_and_one_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    """Checks every quarter threshold log a held loop once, not once per
    check, and its end once, episode after episode."""
    from axeom.watchdog import Watchdog

    caplog.set_level(logging.WARNING, logger="axeom.watchdog")
    with Watchdog(0.05) as watchdog:
        watchdog.start()
        for episode in (1, 2):
            time.sleep(0.5)  # held: about 40 checks past the threshold
            _beat_until(watchdog, lambda: "ran again" in caplog.text)
            messages = [r.getMessage() for r in caplog.records]
            assert sum(HELD in m for m in messages) == 1, messages
            assert sum("ran again" in m for m in messages) == 1, messages
            assert watchdog.episodes == episode
            caplog.clear()


def test_the_warning_names_the_test_when_no_handler_runs(caplog: pytest.LogCaptureFixture) -> None:
    """Held by code that is no socket handler: said so, with that code's stack."""
    from axeom.watchdog import Watchdog

    caplog.set_level(logging.WARNING, logger="axeom.watchdog")
    with Watchdog(0.05) as watchdog:
        watchdog.start()
        time.sleep(0.5)
        _beat_until(watchdog, lambda: "ran again" in caplog.text)
    held = [r.getMessage() for r in caplog.records if HELD in r.getMessage()]
    assert len(held) == 1
    assert "not by a socket handler" in held[0]
    assert "test_the_warning_names_the_test_when_no_handler_runs" in held[0]
