"""The supervisor: the main process of ``axeom run --workers N``.

Shaped like gunicorn's arbiter, in trio's terms: signal handlers only ask
(a reload is a flag the reloader task picks up, a shutdown a task started);
each child has one task that reaps it and asks the restart policy what to
do; one health check stops children whose heartbeats stopped; the worker
table the acceptor places sockets by is republished whenever it changes
and once per heartbeat interval.

This module owns the tree's state and ties the jobs together; each job has
its own module:

==================  ======================================================
``_children``       what a child is, and what starts each role
``_restarts``       reaping: each exit logged, restarted under the policy
``_policy``         the restart policy (a pure object, plain numbers)
``_health``         reports from children; the heartbeat deadline
``_table``          the worker table published to the acceptor
``_reload``         rolling replacement (SIGHUP, the ``reload`` command)
``_shutdown``       the shutdown timeline of one child and of the tree
``_status``         the figures ``axeom status`` shows
``_control``        the control commands (status, ping, reload, publish)
``_hub``            the pub/sub hub; ``_bridge_link``: its link to Redis
==================  ======================================================
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any

import pynng
import trio

from axeom import ipc, metrics, wire
from axeom.config import Config
from axeom.logs import announce
from axeom.reload import ImportCheck
from axeom.trio_runtime import remove_ipc_file

from . import _control
from ._bridge_link import BridgeLink
from ._children import READY_TIMEOUT, Child, command, spawn
from ._health import check_health, receive_reports
from ._hub import Hub
from ._policy import RestartPolicy
from ._reload import reload, watch_source
from ._restarts import watch
from ._shutdown import shutdown
from ._status import status, zero_totals
from ._table import WorkerTable

__all__ = ["Supervisor"]

logger = logging.getLogger("axeom.supervisor")

EXIT_OK = 0


class Supervisor:
    """Owns the listening socket and the process tree of one server."""

    def __init__(
        self,
        config: Config,
        listener: socket.socket,
        collector: metrics.NodeCollector | None = None,
        metrics_dir: str | None = None,
    ) -> None:
        """``collector`` and ``metrics_dir``: with ``--metrics-port``, what the
        metrics server (already listening) renders, and the directory of the
        tree's application metrics (this object removes it at exit)."""
        self.config = config
        self.listener = listener
        self.run_dir = tempfile.mkdtemp(prefix="axeom-")
        self.paths = ipc.RunPaths(self.run_dir)
        self.port = listener.getsockname()[1]
        self.control_address = ipc.control_address(self.port)
        self.worker_policy = RestartPolicy(config.supervisor, config.workers.restart)
        self.acceptor_policy = RestartPolicy(config.supervisor, "permanent")
        # Its own budget: a flapping Redis link must not use up the acceptor's.
        self.bridge_policy = RestartPolicy(config.supervisor, "permanent")
        self.children: list[Child] = []
        self.generations: dict[str, int] = {}
        # Children waiting out their restart backoff: listed by status as "restarting".
        self.restarting: dict[str, Child] = {}
        # Counters of acceptors that exited: status totals survive a restart.
        self.retired_acceptors = zero_totals()
        # The same for workers' traffic, and each child's last exit (cause, time).
        self.retired_workers: dict[str, Any] = {
            "traffic": metrics.zero_traffic(),
            "pubsub_delivered": 0,
        }
        self.last_exits: dict[str, dict[str, Any]] = {}
        # /metrics (--metrics-port): the collector, its server and the tree's
        # directory for application metrics (made before the first child starts).
        self.metrics_collector = collector
        self.metrics_dir = metrics_dir
        self.table = WorkerTable(self)
        self.restarts_total = 0
        self.exit_code = EXIT_OK
        self.stopping = False
        self.started_wall = time.time()
        self._nursery: trio.Nursery | None = None
        self._reload_requested = trio.Event()
        self.hub: Hub | None = None
        self.node_id = os.urandom(6).hex()
        self._mismatches = wire.MismatchLog(logger, "reports")
        if config.supervisor.shutdown_timeout <= config.server.graceful_timeout:
            logger.warning(
                "supervisor.shutdown_timeout (%gs) is not above server.graceful_timeout (%gs):"
                " children may be killed before their close handlers finish",
                config.supervisor.shutdown_timeout,
                config.server.graceful_timeout,
            )

    @property
    def nursery(self) -> trio.Nursery:
        """Where the tree's tasks run (only while ``run`` runs)."""
        assert self._nursery is not None
        return self._nursery

    # -- entry point -----------------------------------------------------------

    async def run(self) -> int:
        try:
            with (
                pynng.Pull0(listen=self.paths.reports) as reports,
                pynng.Pub0(listen=self.paths.events) as events,
                pynng.Rep0(listen=self.control_address) as control,
                pynng.Pull0(listen=self.paths.hub) as hub_in,
            ):
                self.table.events = events
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.hub = Hub(nursery)
                    nursery.start_soon(self.hub.receive_loop, hub_in)
                    nursery.start_soon(self.hub.counts_loop)
                    if self.config.server.pubsub:
                        link = BridgeLink()
                        self.hub.remote = link
                        bridge_out = pynng.Push0(
                            dial=self.paths.bridge,
                            block_on_dial=False,
                            send_timeout=500,
                            # Reconnect promptly to a (re)started bridge (ms).
                            reconnect_time_min=10,
                            reconnect_time_max=200,
                        )
                        nursery.start_soon(link.send_loop, bridge_out)
                    nursery.start_soon(receive_reports, self, reports)
                    nursery.start_soon(_control.serve, self, control)
                    nursery.start_soon(self._handle_signals)
                    nursery.start_soon(check_health, self)
                    nursery.start_soon(self.table.publish_periodically)
                    nursery.start_soon(self._reloader)
                    if self.metrics_collector is not None:
                        nursery.start_soon(
                            metrics.refresh_forever,
                            self.metrics_collector,
                            functools.partial(status, self),
                            trio.sleep,
                            self.config.workers.heartbeat_interval,
                        )
                    if self.config.server.reload:
                        nursery.start_soon(watch_source, self)
                    await self._start_tree()
        except BaseException:
            # The supervisor itself failed: never leave children running
            # unsupervised (a child we miss exits at its next heartbeat: parent_gone).
            for child in self.children:
                child.signal(signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if self.metrics_dir is not None:
                metrics.remove_multiprocess_dir(self.metrics_dir)
            remove_ipc_file(self.control_address)
        return self.exit_code

    async def _start_tree(self) -> None:
        for index in range(1, self.config.server.workers + 1):
            await self.start("worker", f"worker-{index}")
        workers = [c for c in self.children if c.role == "worker"]
        with trio.move_on_after(READY_TIMEOUT):
            for child in workers:
                await child.ready.wait()
        if self.config.server.pubsub:
            await self.start("bridge", "bridge")
        await self.start("acceptor", "acceptor")
        acceptor = self.live("acceptor")
        with trio.move_on_after(READY_TIMEOUT):
            if acceptor is not None:
                await acceptor.ready.wait()
        if self.stopping:
            return
        host = self.config.server.host
        shown = f"[{host}]" if ":" in host else host
        count = self.config.server.workers
        scheme = "wss" if self.config.server.ssl_certfile else "ws"
        announce(
            f"Axeom listening on {scheme}://{shown}:{self.port} "
            f"({count} worker{'s' * (count != 1)})",
            "axeom.supervisor",
        )

    # -- the children ------------------------------------------------------------

    async def start(self, role: str, name: str) -> Child:
        """Start the next generation of child ``name``; a task reaps it."""
        generation = self.generations.get(name, 0) + 1
        self.generations[name] = generation
        process = await spawn(
            *command(
                self.config,
                role,
                name,
                generation,
                run_dir=self.run_dir,
                listener=self.listener,
                node_id=self.node_id,
            )
        )
        child = Child(name=name, role=role, generation=generation, process=process)
        if role == "worker":
            child.handoff_path = self.paths.handoff(name, generation)
        previous = [c for c in self.children if c.name == name]
        child.restarts = max((c.restarts for c in previous), default=0)
        self.children.append(child)
        self.restarting.pop(name, None)
        self.policy(role).on_started(trio.current_time(), name)
        self.nursery.start_soon(watch, self, child)
        logger.info("started %s (pid %d)", name, child.pid)
        return child

    def policy(self, role: str) -> RestartPolicy:
        if role == "worker":
            return self.worker_policy
        return self.bridge_policy if role == "bridge" else self.acceptor_policy

    def live(self, name: str) -> Child | None:
        """The running process of child ``name`` (the newest, during a reload)."""
        for child in reversed(self.children):
            if child.name == name and child.process.returncode is None:
                return child
        return None

    def find(self, name: Any, generation: Any) -> Child | None:
        """The child a report comes from."""
        # Two acceptors overlap during a reload: generations tell them apart.
        for child in self.children:
            if child.name == name and (child.role == "bridge" or child.generation == generation):
                return child
        return None

    # -- signals: they only ask ------------------------------------------------------

    async def _handle_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.request_reload()
                else:
                    logger.info("received %s: shutting down", signal.Signals(signum).name)
                    self.nursery.start_soon(shutdown, self)

    def request_reload(self) -> None:
        """Reload soon; requests made while one runs make one more, not many."""
        self._reload_requested.set()

    async def _reloader(self) -> None:
        """Run the reloads asked for. With ``--reload`` every reload (an edit,
        SIGHUP, ``axeom reload``) first imports the app in a throwaway process:
        an edit that does not import keeps the running code (its error is
        printed once); one that does replaces the processes, the workers all
        at once, closing their sockets with 1012 rather than draining them."""
        check = ImportCheck(self.config.app) if self.config.server.reload else None
        while True:
            await self._reload_requested.wait()
            self._reload_requested = trio.Event()
            if self.stopping:
                continue
            if check is None:
                await reload(self)
            elif await check.passes():
                await reload(self, restart=True)
