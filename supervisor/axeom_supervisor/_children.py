"""Child processes of the tree: how each role is started and what is known of it.

Children are fresh interpreters (``python -m ...``), never forks: nng keeps
threads and state that do not survive ``fork()``. Each gets its settings as
one JSON argument; the acceptor also inherits the listening socket, so that
connections wait in the backlog while it restarts.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import trio

from axeom import wire
from axeom.config import Config
from axeom.logs import LogSettings
from axeom.watchdog import watchdog_options

__all__ = ["READY_TIMEOUT", "Child", "command", "spawn", "wait_ready"]

# Seconds a new child has to report ready (import the app, bind its sockets)
# before it counts as hung; generous, for a slow import on a loaded machine.
READY_TIMEOUT = 60.0


@dataclass(eq=False)
class Child:
    """One running (or just exited) child process."""

    name: str  # "acceptor", "worker-N" or "bridge": stable across restarts
    role: str  # "acceptor" | "worker" | "bridge"
    generation: int
    process: trio.Process
    started_at: float = field(default_factory=trio.current_time)
    state: str = "starting"  # starting | running | draining | stopping
    ready: trio.Event = field(default_factory=trio.Event)
    last_heartbeat: float | None = None
    report: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    stop_requested: bool = False
    hung: bool = False  # stopped for missed heartbeats
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


async def wait_ready(child: Child, deadline: float) -> bool:
    """Wait until ``child`` reports ready (True), exits first (False: a new
    worker whose code does not import gives up at once, not at the deadline)
    or the ``trio.current_time()`` deadline passes (False)."""
    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:

            async def exited() -> None:
                await child.process.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(exited)
            await child.ready.wait()
            nursery.cancel_scope.cancel()
    return child.ready.is_set()


def command(
    config: Config,
    role: str,
    name: str,
    generation: int,
    *,
    run_dir: str,
    listener: socket.socket,
    node_id: str,
) -> tuple[str, dict[str, Any], tuple[int, ...]]:
    """What starts one child: its module, its options and the descriptors it inherits."""
    server = config.server
    options: dict[str, Any] = {
        "app": config.app,
        "run_dir": run_dir,
        "heartbeat_interval": config.workers.heartbeat_interval,
        **LogSettings.of(server).to_options(),
    }
    pass_fds: tuple[int, ...] = ()
    if role in ("acceptor", "worker"):
        # The processes that run application code run it on the loop asked for;
        # the bridge keeps its own (asyncio, for redis-py).
        options["loop"] = server.loop
    if role == "acceptor":
        module = "axeom_acceptor"
        options.update(
            listener_fd=listener.fileno(),
            generation=generation,
            graceful_timeout=server.graceful_timeout,
            handshake=server.handshake_limits(),
            tls=server.ssl_certfile is not None,
        )
        pass_fds = (listener.fileno(),)
    elif role == "bridge":
        module = "axeom_supervisor.redis_bridge"
        options.update(url=config.server.pubsub, node_id=node_id)
    else:
        module = "axeom_workers"
        options.update(
            worker_id=name, generation=generation, graceful_timeout=server.graceful_timeout
        )
        if server.ssl_certfile is not None:
            # The worker runs TLS and the handshake of the connections placed on it.
            options.update(tls=server.tls_options(), handshake=server.handshake_limits())
        options.update(watchdog_options(config))
    return module, options, pass_fds


async def spawn(
    module: str, options: dict[str, Any], pass_fds: tuple[int, ...] = ()
) -> trio.Process:
    """Start ``python -m module OPTIONS_JSON`` sharing our stdout/stderr."""
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", module, wire.encode_settings(options)],
        stdin=subprocess.DEVNULL,
        pass_fds=pass_fds,
    )
