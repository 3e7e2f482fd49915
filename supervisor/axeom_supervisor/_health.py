"""What children report, and the deadline that turns their silence into a stop.

Every child PUSHes to the supervisor (formats in ``axeom.wire``): ready once
it serves, a heartbeat with its load figures once per heartbeat interval, and
the acceptor's confirmation of a worker table. Any of them counts as a sign
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

from axeom import wire

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
    mismatches = wire.MismatchLog(logger, "reports")
    while True:
        try:
            message = wire.decode_report(await reports.arecv())
        except wire.VersionMismatch as exc:
            _wrong_version(supervisor, exc, mismatches)
            continue
        except wire.WireError:
            continue
        child = supervisor.find(message.name, message.generation)
        if child is None:
            continue
        child.last_heartbeat = trio.current_time()
        if message.kind == wire.TABLE_ACK:
            supervisor.table.confirmed(message.fields.get("seq", 0))
        elif message.kind == wire.READY:
            await _ready(supervisor, child, message.fields)
        elif message.kind == wire.HEARTBEAT:
            child.report = message.fields
            if child.role == "acceptor" and not child.ready.is_set():
                # It accepts once it knows the workers: tell it now.
                await supervisor.table.publish()


def _wrong_version(
    supervisor: Supervisor, error: wire.VersionMismatch, mismatches: wire.MismatchLog
) -> None:
    """A child that speaks another wire version (a stale process, or a
    half-upgraded install) is unhealthy: logged once, then stopped like a
    hung child, so that the restart policy replaces it."""
    child = supervisor.find(*error.child) if error.child is not None else None
    if child is None or child.state in ("stopping", "draining"):
        mismatches.report(error, "dropped")
        return
    mismatches.report(error, "stopping it: the restart policy replaces it")
    child.state = "stopping"
    supervisor.nursery.start_soon(stop, supervisor, child)


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
            child.hung = True  # its exit's cause, in status
            supervisor.nursery.start_soon(stop, supervisor, child)
