"""What ``axeom status`` shows an operator first: sockets per route, the
busiest topics, each child's last exit and its cause, and ``--watch``."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client as ws_sync

from axeom import control
from tests._processes import ROOT, Server, axeom_command, run_axeom, running_axeom, wait_for

APP = "tests/apps/metrics_app.py:app"
# Heartbeats five times a second, a hung worker found after a second and
# killed a second after its SIGTERM: the causes show up in a few seconds.
QUICK = """
[workers]
heartbeat_interval = 0.2
heartbeat_timeout = 1.0

[supervisor]
shutdown_timeout = 1.0
backoff = { initial = 0.1, max = 0.1, multiplier = 1.0, jitter = 0.0 }
"""
DEADLINE = 20.0


@pytest.fixture
def quick(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "quick.toml"
    path.write_text(QUICK)
    return ("--config", str(path))


def status_of(server: Server) -> dict[str, Any]:
    return control.status(port=server.port, timeout=10)


@contextmanager
def open_sockets(server: Server, paths: list[str]) -> Iterator[None]:
    """Sockets on ``paths``, each answering before the block runs."""
    with ExitStack() as stack:
        for path in paths:
            ws = stack.enter_context(ws_sync.connect(f"{server.url}{path}", open_timeout=10))
            ws.send("pid" if path.startswith("/room/") else "hello")
            ws.recv(timeout=10)
        yield


def check_view(server: Server, workers: int) -> None:
    """Sockets per route and the top topics, in status and in its text."""
    paths = ["/echo"] * 2 + ["/room/t"] * 3 + ["/room/u"]
    with open_sockets(server, paths):
        wait_for(
            lambda: status_of(server).get("routes") == {"/echo": 2, "/room/:topic": 4},
            DEADLINE,
            "sockets per route",
            output=server.text,
        )
        wait_for(
            lambda: status_of(server).get("top_topics") == [["t", 3], ["u", 1]],
            DEADLINE,
            "the top topics",
            output=server.text,
        )
        result = status_of(server)
        per_worker = [p.get("routes", {}) for p in result["processes"] if "routes" in p]
        assert len(per_worker) == max(workers, 1)
        text = run_axeom("status", "--port", str(server.port)).stdout
        assert "sockets per route: /room/:topic: 4  /echo: 2" in text
        assert "top topics (subscribers): t: 3  u: 1" in text


def test_status_of_a_tree_shows_routes_topics_and_exit_causes(quick: tuple[str, str]) -> None:
    """--workers 2: sockets per route and top topics summed over the workers; a
    killed worker's and a hung worker's last exit, with its cause and time."""
    with running_axeom(APP, "--workers", "2", "--port", "0", *quick) as server:
        check_view(server, 2)
        pids = {p["name"]: p["pid"] for p in status_of(server)["processes"]}
        killed_at = time.time()
        os.kill(pids["worker-1"], signal.SIGKILL)

        def exit_of(name: str) -> dict[str, Any] | None:
            for process in status_of(server)["processes"]:
                if process["name"] == name and process.get("last_exit"):
                    return process["last_exit"]  # type: ignore[no-any-return]
            return None

        wait_for(lambda: exit_of("worker-1") is not None, DEADLINE, "worker-1's exit")
        last = exit_of("worker-1")
        assert last is not None
        assert last["cause"] == "killed by SIGKILL"
        assert not last["requested"]
        assert killed_at - 1 <= last["at"] <= time.time()
        # A handler that blocks its worker's loop: found hung, then stopped.
        wait_for(
            lambda: all(p["state"] == "running" for p in status_of(server)["processes"]),
            DEADLINE,
            "worker-1 back",
        )
        with ws_sync.connect(f"{server.url}/block", open_timeout=10) as ws:
            ws.send("30")
            wait_for(
                lambda: any(
                    (exit_of(name) or {}).get("cause", "").startswith("missed heartbeats")
                    for name in ("worker-1", "worker-2")
                ),
                DEADLINE,
                "a hung worker's exit",
                output=server.text,
            )
        text = run_axeom("status", "--port", str(server.port)).stdout
        assert "last exit of each child:" in text
        # Killed at the shutdown timeout, or ended a moment before by its own
    # watchdog (which closes its sockets with 1011 first): either way it says so.
    assert re.search(
        r"missed heartbeats, then (killed by SIGKILL|ended by its watchdog, its sockets "
        r"closed with 1011 \(code 6\))",
        text,
    ), text


def test_status_of_a_single_process_shows_routes_and_topics() -> None:
    """--workers 0: the same view, from the one process."""
    with running_axeom(APP, "--workers", "0", "--port", "0") as server:
        check_view(server, 0)


def read_until(fd: int, count: int, marker: bytes, deadline: float) -> bytes:
    """Read ``fd`` until ``marker`` was seen ``count`` times (or fail at ``deadline``)."""
    seen = b""
    while seen.count(marker) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; read so far:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"output ended early:\n{seen.decode(errors='replace')}"
            seen += chunk
    return seen


@contextmanager
def watching(
    server: Server, *args: str, tty: bool
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``axeom status --watch`` with its stdout on a pipe, or on a terminal."""
    if tty:
        read_fd, write_fd = pty.openpty()
    else:
        read_fd, write_fd = os.pipe()
    command = axeom_command("status", "--port", str(server.port), *args)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=write_fd, stderr=subprocess.PIPE)
    os.close(write_fd)
    try:
        yield proc, read_fd
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
        os.close(read_fd)


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_status_watch_refreshes_until_ctrl_c(tty: bool) -> None:
    """--watch prints a block per refresh (in place on a terminal, with the
    ANSI clear; separated by a blank line otherwise, no escape codes), and
    Ctrl-C ends it with status 0 and no traceback."""
    with (
        running_axeom(APP, "--workers", "0", "--port", "0") as server,
        watching(server, "--watch", "0.2", tty=tty) as (proc, fd),
    ):
        seen = read_until(fd, 3, b"Axeom on port", time.monotonic() + DEADLINE)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        errors = proc.stderr.read().decode()
        assert "Traceback" not in errors and "Aborted" not in errors
        if tty:
            assert seen.count(b"\x1b[H\x1b[2J") >= 3
        else:
            assert b"\x1b" not in seen
            assert b"\n\nAxeom on port" in seen


def test_status_watch_json_blocks_parse() -> None:
    """--watch --json: each block is one JSON document, blank-line separated."""
    with (
        running_axeom(APP, "--workers", "0", "--port", "0") as server,
        watching(server, "--watch", "0.2", "--json", tty=False) as (proc, fd),
    ):
        seen = read_until(fd, 3, b'\n  "pid"', time.monotonic() + DEADLINE)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    blocks = seen.decode().split("\n\n")
    for block in blocks[:2]:
        assert json.loads(block)["port"] == server.port
