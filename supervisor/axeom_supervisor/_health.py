"""What children report, and the deadline that turns their silence into a stop.

Every child PUSHes to the supervisor: ``ready`` once it serves, ``hb``
(a heartbeat with its load figures) once per heartbeat interval, and the
acceptor ``table`` to confirm a worker table. Any of them counts as a sign
of life. A child silent for ``workers.heartbeat_timeout`` (``READY_TIMEOUT``
while it starts) is hung: it goes through the shutdown timeline, and its
exit is then restarted under the policy like a crash. Heartbeats are sent
from each child's event loop, so a handler that blocks the loop shows here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pynng
import trio

from axeom import ipc

from ._bridge_link import BridgeLink
from ._children import READY_TIMEOUT, Child
from ._shutdown import stop

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["check_health", "receive_reports"]

logger = logging.getLogger("axeom.supervisor")

# The most time between two health checks: a child is found hung at most this
# much after its deadline, however long the heartbeat interval.
MAX_CHECK_INTERVAL = 1.0


async def receive_reports(supervisor: Supervisor, reports: pynng.Socket) -> None:
    """Note each child's sign of life and act on what it says."""
    while True:
        try:
            message = ipc.decode(await reports.arecv())
        except ValueError:
            continue
        child = supervisor.find(message.get("id"), message.get("gen"))
        if child is None:
            continue
        child.last_heartbeat = trio.current_time()
        if message["t"] == "table":
            supervisor.table.confirmed(message.get("seq", 0))
        elif message["t"] == "ready":
            await _ready(supervisor, child, message)
        elif message["t"] == "hb":
            child.report = message
            if child.role == "acceptor" and not child.ready.is_set():
                # It accepts once it knows the workers: tell it now.
                await supervisor.table.publish()


async def _ready(supervisor: Supervisor, child: Child, message: dict[str, Any]) -> None:
    """A child serves: workers join the hub, a (re)started bridge gets every
    topic of this node, and the acceptor learns the new worker table."""
    if child.state == "starting":
        child.state = "running"
    hub = supervisor.hub
    if child.role == "worker" and hub is not None:
        hub.add_worker(child.key, message["pubsub"], message["prefix"])
    if child.role == "bridge" and hub is not None:
        hub.resync_remote()
        if isinstance(hub.remote, BridgeLink):
            hub.remote.started.set()
    child.ready.set()
    await supervisor.table.publish()


async def check_health(supervisor: Supervisor) -> None:
    """A child silent for heartbeat_timeout is hung: SIGTERM, then SIGKILL."""
    policy = supervisor.config.workers
    while True:
        await trio.sleep(min(policy.heartbeat_interval, MAX_CHECK_INTERVAL) / 2)
        now = trio.current_time()
        for child in list(supervisor.children):
            last = child.last_heartbeat or child.started_at
            limit = policy.heartbeat_timeout if child.ready.is_set() else READY_TIMEOUT
            if child.state in ("stopping", "draining") or now - last < limit:
                continue
            logger.error(
                "%s (pid %d) missed heartbeats for %.1fs: terminating it",
                child.name,
                child.pid,
                now - last,
            )
            child.state = "stopping"  # not again at the next check
            supervisor.nursery.start_soon(stop, supervisor, child)
