"""Rolling replacement (SIGHUP, ``axeom reload``): new code everywhere, no
handshake refused.

Every process that runs application code is replaced: the workers one at a
time, then the acceptor. Workers go first because the acceptor decides the
route: the old acceptor handing a socket to a new worker works for every
route the two versions share, while a new acceptor would hand a route added
by the reload to an old worker, which refuses it. Each replacement is ready
before the process it replaces drains; one that does not become ready is
stopped and the old process kept.

``--reload`` (development) takes the same path with two differences: all the
new workers start at once, and the old ones close their sockets with 1012
(service restart) and exit without draining them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from axeom.process import RESTART_SIGNAL

from ._children import READY_TIMEOUT, Child, wait_ready
from ._shutdown import stop

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["reload", "restart_workers", "roll_acceptor", "roll_workers", "watch_source"]

logger = logging.getLogger("axeom.supervisor")


async def reload(supervisor: Supervisor, *, restart: bool = False) -> None:
    """Replace the workers, then the acceptor. The new acceptor accepts on the
    same listening socket before the old one stops; the old one finishes the
    handshakes it has in flight. By default the workers roll one at a time and
    each old one drains (1001); ``restart`` (``--reload``) replaces them all at
    once, each old one closing its sockets with 1012 (service restart)."""
    if restart:
        await restart_workers(supervisor)
    else:
        await roll_workers(supervisor)
    await roll_acceptor(supervisor)


def _running_workers(supervisor: Supervisor) -> list[Child]:
    return [c for c in supervisor.children if c.role == "worker" and c.state == "running"]


async def roll_workers(supervisor: Supervisor) -> None:
    """Replace each worker in turn: the new one is ready (and receiving
    sockets) before the old one drains; other workers are not touched."""
    logger.info("rolling workers")
    for old in _running_workers(supervisor):
        if supervisor.stopping:
            return
        if old.process.returncode is not None or supervisor.live(old.name) is not old:
            continue  # it died (and was replaced) since the roll began
        new = await supervisor.start("worker", old.name)
        new.restarts = old.restarts
        if not await wait_ready(new, trio.current_time() + READY_TIMEOUT):
            logger.error("new %s did not become ready; keeping the old one", old.name)
            continue
        old.state = "draining"
        old.stop_requested = True
        await supervisor.table.publish_and_confirm()
        await stop(supervisor, old, "draining")
    logger.info("workers rolled")


async def restart_workers(supervisor: Supervisor) -> None:
    """``--reload`` (development: fast rather than gentle): start a new worker
    for every running one at once; when they are ready, the old ones close
    their sockets with 1012 (``RESTART_SIGNAL``: the clients reconnect, to the
    new code) and exit, together. As in a roll, no handshake is refused: the
    acceptor places on the new workers before the old ones stop."""
    logger.info("restarting workers")
    pairs = []
    for old in _running_workers(supervisor):
        if supervisor.stopping:
            return  # the shutdown stops the new ones too
        new = await supervisor.start("worker", old.name)
        new.restarts = old.restarts
        pairs.append((old, new))
    deadline = trio.current_time() + READY_TIMEOUT
    for _, new in pairs:
        await wait_ready(new, deadline)
    if supervisor.stopping:
        return
    leaving = []
    for old, new in pairs:
        if not new.ready.is_set():
            logger.error("new %s did not become ready; keeping the old one", old.name)
        elif old.process.returncode is None:
            old.state = "draining"
            old.stop_requested = True
            leaving.append(old)
    await supervisor.table.publish_and_confirm()
    async with trio.open_nursery() as stops:
        for old in leaving:
            stops.start_soon(stop, supervisor, old, "draining", RESTART_SIGNAL)
    logger.info("workers restarted")


async def roll_acceptor(supervisor: Supervisor) -> None:
    """Start a new acceptor; once it accepts, stop the old one."""
    old = supervisor.live("acceptor")
    if old is None or supervisor.stopping:
        return
    new = await supervisor.start("acceptor", "acceptor")
    new.restarts = old.restarts
    if not await wait_ready(new, trio.current_time() + READY_TIMEOUT):
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
