"""The runtimes the behaviour suite runs on: one row per runtime.

Adding a runtime is one ``Runtime(...)`` in ``RUNTIMES``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from tests._asgi_servers import running_asgi
from tests._processes import ROOT, running_axeom
from tests.apps.behaviour_app import PING_INTERVAL, RECORD_ENV

APP = "tests/apps/behaviour_app.py:app"
# The same app as an ASGI server imports it (from the project root).
ASGI_APP = "tests.apps.behaviour_app:app"

# Pings are the server's under ASGI: where it has an interval option, the
# keepalive route's, for every socket (the client answers them all).
SERVER_PING = str(PING_INTERVAL)
# Hypercorn's option takes whole seconds: the interval is in this configuration.
HYPERCORN_PINGS = ("-c", "python:tests.apps.hypercorn_pings")
# The loop `axeom run` uses without --loop: its rows pass no option, as a user would.
DEFAULT_LOOP = "trio"


class ServerProcess(Protocol):
    """A running server as ``running_axeom`` and ``running_asgi`` give it."""

    proc: subprocess.Popen[str]
    port: int

    def text(self) -> str:
        """What it printed so far."""
        ...


@dataclass(frozen=True)
class Runtime:
    """How to serve the behaviour app: in memory (the test kit, ``memory``:
    ``TestClient`` on a test running on ``loop``), ``axeom run APP --workers N
    [--loop L]``, or with ``server`` set the ASGI server of that name
    (``tests/_asgi_servers.py``) plus ``server_args``, its app code on
    ``loop``; ``env`` added either way."""

    name: str
    loop: str
    workers: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    memory: bool = False
    server: str | None = None
    server_args: tuple[str, ...] = ()

    @property
    def in_memory(self) -> bool:
        return self.memory

    @property
    def asyncio_test(self) -> bool:
        """The test kit on an asyncio test: the suite's trio test code runs as
        a guest of an asyncio loop, and calls the test kit in asyncio tasks
        (see conftest), as an asyncio test would."""
        return self.memory and self.loop != "trio"

    @property
    def processes(self) -> int:
        """How many processes run sockets (a test spreads its sockets over them)."""
        return max(self.workers, 1)

    def arguments(self) -> tuple[str, ...]:
        """What follows ``axeom run APP`` for this runtime."""
        loop = () if self.loop == DEFAULT_LOOP else ("--loop", self.loop)
        return ("--port", "0", "--workers", str(self.workers), *loop)

    @contextmanager
    def running(self, record: Path) -> Iterator[ServerProcess]:
        """A real server of the app until the block ends (reaped): its process,
        port and output."""
        env = {RECORD_ENV: str(record), **self.env}
        if self.server is not None:
            with running_asgi(
                self.server, ASGI_APP, cwd=ROOT, args=self.server_args, env=env
            ) as asgi:
                yield asgi
            return
        with running_axeom(APP, *self.arguments(), env=env) as server:
            yield server

    @contextmanager
    def serving(self, record: Path) -> Iterator[int]:
        """A real server of the app until the block ends (reaped); yields its port."""
        with self.running(record) as server:
            yield server.port


RUNTIMES = (
    Runtime("testkit", "trio", memory=True),
    Runtime("testkit-asyncio", "asyncio", memory=True),
    Runtime("trio-w0", "trio", 0),
    Runtime("trio-w2", "trio", 2),
    Runtime("asyncio-w0", "asyncio", 0),
    Runtime("asyncio-w2", "asyncio", 2),
    Runtime("uvloop-w2", "uvloop", 2),
    # ASGI servers: one process each, the app on the server's loop.
    Runtime(
        "uvicorn", "asyncio", server="uvicorn", server_args=("--ws-ping-interval", SERVER_PING)
    ),
    Runtime(
        "hypercorn",
        "asyncio",
        server="hypercorn",
        server_args=HYPERCORN_PINGS,
    ),
    Runtime(
        "hypercorn-trio",
        "trio",
        server="hypercorn-trio",
        server_args=HYPERCORN_PINGS,
    ),
    Runtime("granian", "asyncio", server="granian"),
    Runtime("daphne", "asyncio", server="daphne"),
)


def limitation(
    runtime: str, reason: str, *cases: str, server_exits: bool = False
) -> pytest.MarkDecorator:
    """A documented limitation of the server of row ``runtime`` (README's
    per-server table): the test is a strict xfail on that row only, and only
    for the parametrized ``cases`` named (their ids), or all if none are.
    ``server_exits``: the server's process exits on that test, which then runs
    on a server of its own, so that the row's server never goes through it."""
    return pytest.mark.limitation(
        runtime=runtime, reason=f"{runtime}: {reason}", cases=cases, server_exits=server_exits
    )


def available() -> list[Runtime]:
    """The rows the suite runs: every runtime."""
    return list(RUNTIMES)
