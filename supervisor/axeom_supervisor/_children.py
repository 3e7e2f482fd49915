"""Child processes of the tree: how each is started and what is known of it.

Children are fresh interpreters (``python -m ...``), never forks: nng keeps
threads and state that do not survive ``fork()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = ["Child", "spawn"]


@dataclass(eq=False)
class Child:
    """One running (or just exited) child process."""

    name: str  # "acceptor" or "worker-N": stable across restarts
    role: str  # "acceptor" | "worker"
    generation: int
    process: trio.Process
    started_at: float = field(default_factory=trio.current_time)
    state: str = "starting"  # starting | running | draining | stopping
    ready: trio.Event = field(default_factory=trio.Event)
    last_heartbeat: float | None = None
    report: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    stop_requested: bool = False
    handoff_path: str | None = None

    @property
    def key(self) -> str:
        """Unique per process: a name is reused by its replacement, not a generation."""
        return f"{self.name}.{self.generation}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass


async def spawn(
    module: str, options: dict[str, Any], pass_fds: tuple[int, ...] = ()
) -> trio.Process:
    """Start ``python -m module OPTIONS_JSON`` sharing our stdout/stderr."""
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", module, json.dumps(options)],
        stdin=subprocess.DEVNULL,
        pass_fds=pass_fds,
    )
