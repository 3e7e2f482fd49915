"""Rolling replacement (SIGHUP, ``axeom reload``): new code everywhere, no
handshake refused.

Every process that runs application code is replaced: the workers one at a
time, then the acceptor. Workers go first because the acceptor decides the
route: the old acceptor handing a socket to a new worker works for every
route the two versions share, while a new acceptor would hand a route added
by the reload to an old worker, which refuses it. Each replacement is ready
before the process it replaces drains; one that does not become ready is
stopped and the old process kept.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from ._children import READY_TIMEOUT
from ._shutdown import stop

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["reload", "roll_acceptor", "roll_workers", "watch_source"]

logger = logging.getLogger("axeom.supervisor")


async def reload(supervisor: Supervisor, signum: int = signal.SIGTERM) -> None:
    """Replace the workers one at a time, then the acceptor. The new acceptor
    accepts on the same listening socket before the old one stops; the old
    one finishes the handshakes it has in flight. ``signum`` stops each old
    worker: SIGTERM drains it (1001); ``--reload`` sends ``RESTART_SIGNAL``
    (its sockets are closed with 1012, service restart: clients reconnect)."""
    await roll_workers(supervisor, signum)
    await roll_acceptor(supervisor)


async def roll_workers(supervisor: Supervisor, signum: int = signal.SIGTERM) -> None:
    """Replace each worker in turn: the new one is ready (and receiving
    sockets) before the old one drains; other workers are not touched."""
    logger.info("rolling workers")
    running = [c for c in supervisor.children if c.role == "worker" and c.state == "running"]
    for old in running:
        if supervisor.stopping:
            return
        if old.process.returncode is not None or supervisor.live(old.name) is not old:
            continue  # it died (and was replaced) since the roll began
        new = await supervisor.start("worker", old.name)
        new.restarts = old.restarts
        with trio.move_on_after(READY_TIMEOUT):
            await new.ready.wait()
        if not new.ready.is_set():
            logger.error("new %s did not become ready; keeping the old one", old.name)
            continue
        old.state = "draining"
        old.stop_requested = True
        await supervisor.table.publish_and_confirm()
        await stop(supervisor, old, "draining", signum)
    logger.info("workers rolled")


async def roll_acceptor(supervisor: Supervisor) -> None:
    """Start a new acceptor; once it accepts, stop the old one."""
    old = supervisor.live("acceptor")
    if old is None or supervisor.stopping:
        return
    new = await supervisor.start("acceptor", "acceptor")
    new.restarts = old.restarts
    with trio.move_on_after(READY_TIMEOUT):
        await new.ready.wait()
    if not new.ready.is_set():
        logger.error("new acceptor did not start accepting; keeping the old one")
        new.stop_requested = True
        await stop(supervisor, new)
        return
    old.stop_requested = True
    await stop(supervisor, old, "draining")
    logger.info("acceptor replaced")


async def watch_source(supervisor: Supervisor) -> None:
    """``--reload``: each edit of a ``.py`` file of the app asks for a reload
    (which checks that the edit imports before it replaces anything)."""
    from axeom.reload import source_changes, watched_folders

    server = supervisor.config.server
    folders = watched_folders(supervisor.config.app, server.reload_dirs)
    logger.info("--reload: watching %s", ", ".join(folders))
    async for paths in source_changes(folders):
        logger.info("%s changed: reloading", ", ".join(paths))
        supervisor.request_reload()
