"""``axeom run --workers 0 --reload``: a small parent that watches, and the server as its child.

The one process of ``--workers 0`` cannot load new code into itself (modules, and the state
an app keeps in them, do not unload). So with ``--reload`` the process ``axeom run`` started
stays a watcher that never imports the app: it binds the listening socket, starts the server
as a child (``python -m axeom._reloader ARGS_JSON``, which inherits that socket, so the port
stays the same and connections made during a restart wait in the backlog), and on each edit
that imports (``axeom.reload.ImportCheck``) sends the child ``RESTART_SIGNAL`` (it closes its
sockets with 1012, runs the ``close`` handlers and ``on_stop``, and exits), then starts a new
one. SIGHUP, and ``axeom reload`` (which the child passes on as SIGHUP), restart it the same
way. A child that exits by itself on its first start (the app does not import, a port in
use) ends the watcher with its status, as without ``--reload``; after a restart the watcher
waits for the next edit instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import trio

from .config import Config, ConfigError
from .process import EXIT_CANNOT_START, RESTART_SIGNAL, configure_logging
from .reload import RELOADER_ENV, ImportCheck, source_changes, watched_folders

__all__ = ["run_reloader"]

logger = logging.getLogger("axeom.reload")


def run_reloader(config: Config, arguments: dict[str, Any], listener: socket.socket) -> int:
    """Watch and restart the server child until SIGTERM or SIGINT; return the exit status.
    ``arguments``: the app, config file and overrides the child builds its Config from."""
    configure_logging(config.server.log_level)
    listener.set_inheritable(True)
    with listener:
        try:
            return trio.run(Reloader(config, arguments, listener).run)
        except KeyboardInterrupt:  # before the signal handlers were in place
            return 0


class Reloader:
    """The parent of ``--workers 0 --reload``: one server child at a time."""

    def __init__(self, config: Config, arguments: dict[str, Any], listener: socket.socket) -> None:
        self.config = config
        self.arguments = {**arguments, "listener_fd": listener.fileno()}
        self.listener = listener
        self.check = ImportCheck(config.app)
        self.child: trio.Process | None = None  # the one serving (or starting)
        self.running: set[trio.Process] = set()  # not reaped yet: a stopping one too
        self.started = 0
        self.status = 0
        self.stopping = False
        self._requested = trio.Event()

    async def run(self) -> int:
        folders = watched_folders(self.config.app, self.config.server.reload_dirs)
        logger.info("--reload: watching %s", ", ".join(folders))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._signals, nursery)
            nursery.start_soon(self._watch, folders)
            await self._start(nursery)
            while True:
                await self._requested.wait()
                self._requested = trio.Event()
                if await self.check.passes():
                    await self._stop(RESTART_SIGNAL)
                    await self._start(nursery)
        return self.status

    async def _watch(self, folders: list[str]) -> None:
        async for paths in source_changes(folders):
            logger.info("%s changed: reloading", ", ".join(paths))
            self._requested.set()

    async def _signals(self, nursery: trio.Nursery) -> None:
        """SIGHUP restarts the child; SIGTERM or SIGINT stops it, then the watcher."""
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._requested.set()
                    continue
                self.stopping = True
                async with trio.open_nursery() as stops:
                    for child in list(self.running):
                        stops.start_soon(self._stop_process, child, signal.SIGTERM)
                nursery.cancel_scope.cancel()
                return

    async def _start(self, nursery: trio.Nursery) -> None:
        if self.stopping:
            return
        self.started += 1
        child = await trio.lowlevel.open_process(
            [sys.executable, "-m", "axeom._reloader", json.dumps(self.arguments)],
            stdin=subprocess.DEVNULL,
            pass_fds=(self.listener.fileno(),),
            env={**os.environ, RELOADER_ENV: str(os.getpid())},
        )
        self.child = child
        self.running.add(child)
        nursery.start_soon(self._reap, child, self.started == 1, nursery)

    async def _reap(self, child: trio.Process, first: bool, nursery: trio.Nursery) -> None:
        """Wait for ``child``; one that exits unasked ends the watcher (first start)
        or leaves it waiting for an edit (later ones: the edit broke something)."""
        status = await child.wait()
        self.running.discard(child)
        if self.child is not child or self.stopping:
            return  # asked to stop: a restart or the shutdown
        self.child = None
        if first:
            self.status = status
            nursery.cancel_scope.cancel()
            return
        logger.error("the server exited (status %d): waiting for an edit to start it again", status)

    async def _stop(self, signum: int) -> None:
        """Stop the current child (if any) and wait until it exited."""
        child, self.child = self.child, None
        if child is not None:
            await self._stop_process(child, signum)

    async def _stop_process(self, child: trio.Process, signum: int) -> None:
        """The shutdown timeline of one child: ``signum``, SIGKILL after
        ``shutdown_timeout``. Returns once it exited."""
        if child.returncode is not None:
            return
        child.send_signal(signum)
        with trio.move_on_after(self.config.supervisor.shutdown_timeout):
            await child.wait()
            return
        logger.error("the server still runs after %s: killing it", signal.Signals(signum).name)
        child.kill()
        await child.wait()


def _child_main(encoded: str) -> None:
    """The server child: serve in this process on the inherited listening socket."""
    import click

    from .cli import _serve_in_process

    arguments = json.loads(encoded)
    try:
        config = Config.build(arguments["app"], arguments.get("file"), **arguments["overrides"])
    except ConfigError as exc:  # the config file was edited since: not ours to guess
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CANNOT_START)
    listener = socket.socket(fileno=arguments["listener_fd"])
    try:
        _serve_in_process(config, listener)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    _child_main(sys.argv[1])
