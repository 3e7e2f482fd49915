"""Reaping: every exit is logged with its cause, then the restart policy decides.

Each child has one task here that waits for it to exit (trio's form of a
SIGCHLD handler). The exit leaves the tables at once (the hub forgets a
worker's subscriptions, the acceptor gets a table without it), is logged
(an error unless the supervisor asked for it), and, unless the tree is
stopping, goes to the role's ``RestartPolicy``: ignore it, restart after a
backoff, or give up and stop everything with a non-zero status.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from axeom import metrics
from axeom.process import EXIT_APP_LOAD_FAILED, EXIT_ON_START_FAILED

from ._children import Child
from ._policy import ExitStatus, GiveUp, Ignore, Restart
from ._shutdown import shutdown, stop
from ._status import add_totals

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["EXIT_GAVE_UP", "watch"]

logger = logging.getLogger("axeom.supervisor")

EXIT_GAVE_UP = 1


async def watch(supervisor: Supervisor, child: Child) -> None:
    """Reap one child and act on its exit."""
    returncode = await child.process.wait()
    supervisor.children.remove(child)
    if child.role == "worker" and supervisor.hub is not None:
        supervisor.hub.drop_worker(child.key)  # its subscriptions leave the table now
    if child.role == "acceptor":
        add_totals(supervisor.retired_acceptors, child.report)
    status = ExitStatus.from_returncode(returncode, requested=child.stop_requested)
    _retire(supervisor, child, status)
    log = logger.info if child.stop_requested or supervisor.stopping else logger.error
    log("%s (pid %d) %s", child.name, child.pid, status.describe())
    if child.role == "worker":
        await supervisor.table.publish()
    if supervisor.stopping:
        return
    decision = supervisor.policy(child.role).on_exit(trio.current_time(), child.name, status)
    if isinstance(decision, Ignore):
        return
    if isinstance(decision, GiveUp) and _replacement_failed(supervisor, child, status):
        return
    if isinstance(decision, GiveUp):
        logger.error("%s", decision.reason)  # the reason ends in "giving up"
        supervisor.exit_code = _exit_code(status)
        await shutdown(supervisor)
        return
    assert isinstance(decision, Restart)
    # The strategy is about workers, which may share state; the acceptor
    # and the bridge hold none and restart on their own.
    if child.role == "worker" and supervisor.worker_policy.strategy == "one_for_all":
        await _restart_all(supervisor, child, decision)
    else:
        await _restart(supervisor, child, decision)


def _retire(supervisor: Supervisor, child: Child, status: ExitStatus) -> None:
    """Keep what an exited child leaves to status and metrics: its traffic
    totals (a worker's), its exit cause and time, and, in the tree's
    application metrics, its ``live*`` gauges leave the sums."""
    if child.role == "worker":
        retired = supervisor.retired_workers
        metrics.add_traffic(retired["traffic"], child.report.get("traffic"))
        retired["pubsub_delivered"] += child.report.get("pubsub_delivered", 0)
    cause = status.describe()
    if child.hung:
        cause = f"missed heartbeats, then {cause}"
    supervisor.last_exits[child.name] = {
        "cause": cause,
        "requested": child.stop_requested and not child.hung,
        "at": round(time.time(), 3),
    }
    if supervisor.metrics_dir is not None:
        metrics.mark_dead(child.pid, supervisor.metrics_dir)


def _replacement_failed(supervisor: Supervisor, child: Child, status: ExitStatus) -> bool:
    """A reload's new process that could not load the app (a bad deploy, an
    edit saved while a ``--reload`` was under way) while the process it was
    to replace still runs: the reload keeps that one (``wait_ready`` tells it),
    and the tree serves on with the code it had instead of giving up."""
    if not (status.app_load_failed or status.on_start_failed):
        return False
    if supervisor.live(child.name) is None:
        return False  # nothing left to keep: the app cannot start at all
    logger.error(
        "the reload's new %s %s: the application failed to load (its log shows the"
        " error); keeping the running %s and its code",
        child.name,
        status.describe(),
        child.name,
    )
    return True


def _exit_code(status: ExitStatus) -> int:
    """The tree's status when it gives up on a child: the child's own for a
    failure of the app (import, ``on_start``), so that ``axeom run`` exits as
    ``--workers 0`` would; else EXIT_GAVE_UP."""
    if status.app_load_failed:
        return EXIT_APP_LOAD_FAILED
    if status.on_start_failed:
        return EXIT_ON_START_FAILED
    return EXIT_GAVE_UP


async def _restart(supervisor: Supervisor, child: Child, decision: Restart) -> None:
    logger.info("restarting %s in %.2fs", child.name, decision.after)
    supervisor.restarting[child.name] = child
    await trio.sleep(decision.after)
    if supervisor.stopping:
        return
    new = await supervisor.start(child.role, child.name)
    new.restarts = child.restarts + 1
    supervisor.restarts_total += 1


async def _restart_all(supervisor: Supervisor, failed: Child, decision: Restart) -> None:
    """``one_for_all``: stop every other worker (on the shutdown timeline),
    then start them all again. The acceptor and the bridge are left alone."""
    logger.info("one_for_all: restarting every worker after %s exited", failed.name)
    siblings = [c for c in supervisor.children if c.role == "worker"]
    for sibling in siblings:
        sibling.stop_requested = True
    await supervisor.table.publish()
    async with trio.open_nursery() as stops:
        for sibling in siblings:
            stops.start_soon(stop, supervisor, sibling)
    await trio.sleep(decision.after)
    if supervisor.stopping:
        return
    supervisor.restarts_total += 1
    for index in range(1, supervisor.config.server.workers + 1):
        if supervisor.live(f"worker-{index}") is None:
            await supervisor.start("worker", f"worker-{index}")
