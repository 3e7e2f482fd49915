"""Start ``axeom`` as a real subprocess and always reap it."""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

READY = re.compile(r"Axeom listening on wss?://([\w.\[\]:]+):(\d+)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Server:
    """A running ``axeom run`` process and what it printed so far."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def text(self) -> str:
        return "".join(self.output)


def axeom_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "axeom", *args]


@contextmanager
def running_axeom(
    *args: str,
    ready_timeout: float = 20.0,
    env: dict[str, str] | None = None,
    descriptors: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """``axeom run ARGS`` until the ready line; terminated and reaped on exit.
    ``descriptors``: (soft, hard) RLIMIT_NOFILE to start the tree with."""
    with running_command(
        axeom_command("run", *args),
        ready_timeout=ready_timeout,
        env=env,
        preexec_fn=None
        if descriptors is None
        else functools.partial(limit_descriptors, *descriptors),
    ) as server:
        yield server


@contextmanager
def running_command(
    command: list[str],
    *,
    cwd: str | os.PathLike[str] = ROOT,
    ready_timeout: float = 20.0,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Any command that serves Axeom (``axeom run`` in some form), run in ``cwd``
    until it prints its ready line; terminated and reaped on exit."""
    proc = subprocess.Popen(
        command,
        preexec_fn=preexec_fn,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()
    port: list[int] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = READY.search(line)
            if match and not port:
                port.append(int(match.group(2)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(ready_timeout) or not port:
            raise AssertionError(f"{command} did not become ready:\n{''.join(output)}")
        yield Server(proc, port[0], output)
    finally:
        stop(proc)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def limit_descriptors(soft: int, hard: int) -> None:
    """In the child before exec: a lower descriptor limit for the whole tree."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM the process group, then SIGKILL; always waits."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def status(port: int) -> dict[str, Any]:
    """``axeom status --json`` of the server on ``port``."""
    result = run_axeom("status", "--port", str(port), "--json", timeout=10)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    output: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` every 50 ms until true; fail after ``timeout`` seconds
    (with the last lines of ``output()`` in the message, when given)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = "\n".join(output().splitlines()[-40:]) if output is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
        time.sleep(0.05)


def run_axeom(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``axeom ARGS`` to completion (for commands that must fail fast)."""
    return subprocess.run(
        axeom_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
