"""Start a real ASGI server (uvicorn, hypercorn, granian, daphne) on an app of
``tests/apps`` as a subprocess on 127.0.0.1, wait until it accepts
connections, and always reap it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests._processes import ROOT

APPS = os.path.join(ROOT, "tests", "apps")
# Daphne (Twisted) takes a few seconds to import on a loaded machine.
READY_TIMEOUT = 30.0
# How long a server may take to shut down (lifespan shutdown included) after SIGTERM.
STOP_TIMEOUT = 10.0


def command(server: str, target: str, port: int) -> list[str]:
    """The command line that serves ``target`` (``module:attr``) with ``server``,
    exactly as the README gives it (plus the address)."""
    python = sys.executable
    bind = f"127.0.0.1:{port}"
    commands = {
        "uvicorn": [python, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)],
        "hypercorn": [python, "-m", "hypercorn", target, "-b", bind],
        "hypercorn-trio": [python, "-m", "hypercorn", "-k", "trio", target, "-b", bind],
        "granian": [
            python,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            target,
        ],
        "daphne": [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), target],
    }
    return commands[server]


@dataclass
class ASGIServer:
    """A running server: its name, port, mount prefix and what it printed."""

    name: str
    port: int
    prefix: str
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{self.prefix}{path}"

    def text(self) -> str:
        return "".join(self.output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_asgi(
    server: str,
    target: str,
    prefix: str = "",
    cwd: str = APPS,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[ASGIServer]:
    """``server`` serving ``target`` from ``cwd`` (``tests/apps``), with extra
    ``args`` and ``env``, until it accepts connections; terminated (SIGTERM,
    then SIGKILL) and reaped on exit."""
    port = free_port()
    path = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [*command(server, target, port), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = ASGIServer(server, port, prefix, proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            running.output.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{server} {target} did not start:\n{running.text()}")
            time.sleep(0.05)
        yield running
    finally:
        stop_server(proc)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def stop_server(proc: subprocess.Popen[str], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the server's main process only, as a process manager does: a
    server with worker processes (hypercorn's default, granian) stops them
    itself, through their lifespan shutdown, whereas SIGTERM to the whole group
    kills hypercorn's worker before it runs. Then SIGKILL whatever is left in
    the group; always waits."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
    except ProcessLookupError:
        pass
    return proc.wait()
