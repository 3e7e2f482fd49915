"""The runtimes the behaviour suite runs on: one row per runtime.

Adding a runtime is one ``Runtime(...)`` in ``RUNTIMES``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests._processes import running_axeom
from tests.apps.behaviour_app import RECORD_ENV

APP = "tests/apps/behaviour_app.py:app"

# The loop `axeom run` uses without --loop: its rows pass no option, as a user would.
DEFAULT_LOOP = "trio"


@dataclass(frozen=True)
class Runtime:
    """How to serve the behaviour app: in memory (the test kit, ``memory``:
    ``TestClient`` on a test running on ``loop``) or ``axeom run APP
    --workers N [--loop L]`` with ``env`` added."""

    name: str
    loop: str
    workers: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    memory: bool = False

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
    def serving(self, record: Path) -> Iterator[int]:
        """A real server of the app until the block ends (reaped); yields its port."""
        env = {RECORD_ENV: str(record), **self.env}
        with running_axeom(APP, *self.arguments(), env=env) as server:
            yield server.port


RUNTIMES = (
    Runtime("testkit", "trio", memory=True),
    Runtime("testkit-asyncio", "asyncio", memory=True),
    Runtime("trio-w0", "trio", 0),
    Runtime("trio-w2", "trio", 2),
    Runtime("asyncio-w0", "asyncio", 0),
    Runtime("asyncio-w2", "asyncio", 2),
    Runtime("uvloop-w2", "uvloop", 2),
)


def available() -> list[Runtime]:
    """The rows the suite runs: every runtime."""
    return list(RUNTIMES)
