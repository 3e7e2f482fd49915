"""The shutdown timeline: of one child, and of the whole tree.

Every child is stopped the same way, whatever the reason (SIGTERM of the
tree, a reload, a missed heartbeat, a ``one_for_all`` restart): SIGTERM,
during which it has ``server.graceful_timeout`` to finish its work (a
worker closes its sockets with 1001 and runs ``close`` handlers; the
acceptor finishes the handshakes in flight), then SIGKILL if it is still
running ``supervisor.shutdown_timeout`` after the SIGTERM.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from ._children import Child

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["shutdown", "stop"]

logger = logging.getLogger("axeom.supervisor")

# Seconds to let the reaping tasks log the last exits once every child is gone.
REAP_WAIT = 1.0


async def stop(
    supervisor: Supervisor, child: Child, state: str = "stopping", signum: int = signal.SIGTERM
) -> None:
    """The shutdown timeline, the same on every path: SIGTERM (the child
    then has ``graceful_timeout`` to finish its work), SIGKILL if it still
    runs ``shutdown_timeout`` after the SIGTERM. Returns once it exited.
    A ``--reload`` roll sends ``RESTART_SIGNAL`` (``signum``) instead of
    SIGTERM: the same timeline, with the sockets closed with 1012.

    Callers set ``stop_requested`` first when the exit must not be
    restarted (shutdown, reload, ``one_for_all``); a hung child is
    stopped without it, and so restarted under the policy."""
    child.state = state
    child.signal(signum)
    timeout = supervisor.config.supervisor.shutdown_timeout
    with trio.move_on_after(timeout):
        await child.process.wait()
        return
    logger.error(
        "%s (pid %d) still running %gs after %s: killing it",
        child.name,
        child.pid,
        timeout,
        signal.Signals(signum).name,
    )
    child.signal(signal.SIGKILL)
    await child.process.wait()


async def shutdown(supervisor: Supervisor) -> None:
    """Stop the tree on the shutdown timeline: the acceptor first (no new
    socket reaches a draining worker), then the workers, then the bridge
    (close handlers may still publish). Then the supervisor's own tasks end."""
    if supervisor.stopping:
        return
    supervisor.stopping = True
    for child in supervisor.children:
        child.stop_requested = True
    for role in ("acceptor", "worker", "bridge"):
        async with trio.open_nursery() as stops:
            for child in [c for c in supervisor.children if c.role == role]:
                stops.start_soon(stop, supervisor, child)
        if role == "acceptor":
            # Nothing reads the backlog any more: closing the last copy of
            # the listening socket refuses new connections at once instead
            # of holding them unanswered while the workers drain.
            supervisor.listener.close()
    with trio.move_on_after(REAP_WAIT):
        while supervisor.children:
            await trio.sleep(0.01)
    supervisor.nursery.cancel_scope.cancel()
