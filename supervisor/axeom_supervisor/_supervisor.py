"""The supervisor: the main process of ``axeom run --workers N``.

Shaped like gunicorn's arbiter: signal handlers only enqueue; one place
reaps children (logging each exit cause) and asks the restart policy what
to do; a health check kills children whose heartbeats stopped; the worker
table the acceptor places sockets by is republished whenever it changes
and once per heartbeat interval.
"""

from __future__ import annotations

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

from axeom._config import Config
from axeom._native import _ipc
from axeom._native._control import remove_ipc_file

from . import _control
from ._bridge_link import BridgeLink
from ._children import Child, spawn
from ._hub import Hub
from ._policy import ExitStatus, GiveUp, Ignore, Restart, RestartPolicy

__all__ = ["Supervisor"]

logger = logging.getLogger("axeom.supervisor")

EXIT_OK, EXIT_GAVE_UP = 0, 1
READY_TIMEOUT = 60.0
KILL_GRACE = 5.0


class Supervisor:
    """Owns the listening socket and the process tree of one server."""

    def __init__(self, config: Config, listener: socket.socket) -> None:
        self.config = config
        self.listener = listener
        self.run_dir = tempfile.mkdtemp(prefix="axeom-")
        self.paths = _ipc.RunPaths(self.run_dir)
        self.port = listener.getsockname()[1]
        self.control_address = _ipc.control_address(self.port)
        self.worker_policy = RestartPolicy(config.supervisor, config.workers.restart)
        self.acceptor_policy = RestartPolicy(config.supervisor, "permanent")
        # Its own budget: a flapping Redis link must not use up the acceptor's.
        self.bridge_policy = RestartPolicy(config.supervisor, "permanent")
        self.children: list[Child] = []
        self.generations: dict[str, int] = {}
        self.restarts_total = 0
        self.exit_code = EXIT_OK
        self.stopping = False
        self.started_wall = time.time()
        self._events: pynng.Socket | None = None
        self._nursery: trio.Nursery | None = None
        self._reload_requested = trio.Event()
        self.hub: Hub | None = None
        self.node_id = os.urandom(6).hex()

    # -- entry point -----------------------------------------------------------

    async def run(self) -> int:
        try:
            with (
                pynng.Pull0(listen=self.paths.reports) as reports,
                pynng.Pub0(listen=self.paths.events) as events,
                pynng.Rep0(listen=self.control_address) as control,
                pynng.Pull0(listen=self.paths.hub) as hub_in,
            ):
                self._events = events
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.hub = Hub(nursery)
                    nursery.start_soon(self.hub.receive_loop, hub_in)
                    nursery.start_soon(self.hub.counts_loop)
                    if self.config.server.pubsub:
                        link = BridgeLink()
                        self.hub.remote = link
                        bridge_out = pynng.Push0(
                            dial=self.paths.bridge, block_on_dial=False, send_timeout=500
                        )
                        nursery.start_soon(link.send_loop, bridge_out)
                    nursery.start_soon(self._receive_reports, reports)
                    nursery.start_soon(self._serve_control, control)
                    nursery.start_soon(self._handle_signals)
                    nursery.start_soon(self._check_health)
                    nursery.start_soon(self._publish_periodically)
                    nursery.start_soon(self._reloader)
                    await self._start_tree()
        except BaseException:
            # The supervisor itself failed: never leave children running
            # unsupervised (they also die with us through PR_SET_PDEATHSIG).
            for child in self.children:
                child.signal(signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            remove_ipc_file(self.control_address)
        return self.exit_code

    async def _start_tree(self) -> None:
        for index in range(1, self.config.server.workers + 1):
            await self._start("worker", f"worker-{index}")
        workers = [c for c in self.children if c.role == "worker"]
        with trio.move_on_after(READY_TIMEOUT):
            for child in workers:
                await child.ready.wait()
        if self.config.server.pubsub:
            await self._start("bridge", "bridge")
        await self._start("acceptor", "acceptor")
        acceptor = self._child("acceptor")
        with trio.move_on_after(READY_TIMEOUT):
            if acceptor is not None:
                await acceptor.ready.wait()
        if self.stopping:
            return
        host = self.config.server.host
        shown = f"[{host}]" if ":" in host else host
        print(
            f"Axeom listening on ws://{shown}:{self.port} ({self.config.server.workers} workers)",
            flush=True,
        )

    # -- children ------------------------------------------------------------------

    async def _start(self, role: str, name: str) -> Child:
        generation = self.generations.get(name, 0) + 1
        self.generations[name] = generation
        server = self.config.server
        options: dict[str, Any] = {
            "app": self.config.app,
            "run_dir": self.run_dir,
            "log_level": server.log_level,
            "heartbeat_interval": self.config.workers.heartbeat_interval,
        }
        pass_fds: tuple[int, ...] = ()
        if role == "acceptor":
            module = "axeom._native.acceptor_main"
            options["listener_fd"] = self.listener.fileno()
            pass_fds = (self.listener.fileno(),)
        elif role == "bridge":
            module = "axeom_supervisor.redis_bridge"
            options.update(url=self.config.server.pubsub, node_id=self.node_id)
        else:
            module = "axeom_workers"
            options.update(
                worker_id=name, generation=generation, graceful_timeout=server.graceful_timeout
            )
        process = await spawn(module, options, pass_fds)
        child = Child(name=name, role=role, generation=generation, process=process)
        if role == "worker":
            child.handoff_path = self.paths.handoff(name, generation)
        previous = [c for c in self.children if c.name == name]
        child.restarts = max((c.restarts for c in previous), default=0)
        self.children.append(child)
        self._policy(role).on_started(trio.current_time(), name)
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, child)
        logger.info("started %s (pid %d)", name, child.pid)
        return child

    def _policy(self, role: str) -> RestartPolicy:
        if role == "worker":
            return self.worker_policy
        return self.bridge_policy if role == "bridge" else self.acceptor_policy

    def _child(self, name: str) -> Child | None:
        for child in reversed(self.children):
            if child.name == name and child.process.returncode is None:
                return child
        return None

    async def _watch(self, child: Child) -> None:
        """Reap one child and act on its exit."""
        returncode = await child.process.wait()
        self.children.remove(child)
        if child.role == "worker" and self.hub is not None:
            self.hub.drop_worker(child.key)  # its subscriptions leave the table now
        status = ExitStatus.from_returncode(returncode, requested=child.stop_requested)
        log = logger.info if child.stop_requested or self.stopping else logger.error
        log("%s (pid %d) %s", child.name, child.pid, status.describe())
        if child.role == "worker":
            await self._publish_workers()
        if self.stopping:
            return
        decision = self._policy(child.role).on_exit(trio.current_time(), child.name, status)
        if isinstance(decision, Ignore):
            return
        if isinstance(decision, GiveUp):
            logger.error("giving up: %s", decision.reason)
            self.exit_code = 3 if status.app_load_failed else EXIT_GAVE_UP
            await self.shutdown()
            return
        assert isinstance(decision, Restart)
        if self._policy(child.role).strategy == "one_for_all":
            await self._restart_all(child, decision)
        else:
            await self._restart(child, decision)

    async def _restart(self, child: Child, decision: Restart) -> None:
        logger.info("restarting %s in %.2fs", child.name, decision.after)
        await trio.sleep(decision.after)
        if self.stopping:
            return
        new = await self._start(child.role, child.name)
        new.restarts = child.restarts + 1
        self.restarts_total += 1

    async def _restart_all(self, failed: Child, decision: Restart) -> None:
        logger.info("one_for_all: restarting every child after %s exited", failed.name)
        siblings = list(self.children)
        for sibling in siblings:
            sibling.stop_requested = True
            sibling.signal(signal.SIGTERM)
        with trio.move_on_after(self.config.supervisor.shutdown_timeout):
            while any(s.process.returncode is None for s in siblings):
                await trio.sleep(0.05)
        for sibling in siblings:
            sibling.signal(signal.SIGKILL)
        await trio.sleep(decision.after)
        if self.stopping:
            return
        self.restarts_total += 1
        for index in range(1, self.config.server.workers + 1):
            if self._child(f"worker-{index}") is None:
                await self._start("worker", f"worker-{index}")
        if self.config.server.pubsub and self._child("bridge") is None:
            await self._start("bridge", "bridge")
        if self._child("acceptor") is None:
            await self._start("acceptor", "acceptor")

    # -- reports, health, worker table ---------------------------------------------

    async def _receive_reports(self, reports: pynng.Socket) -> None:
        while True:
            try:
                message = _ipc.decode(await reports.arecv())
            except ValueError:
                continue
            child = self._find(message.get("id"), message.get("gen"))
            if child is None:
                continue
            child.last_heartbeat = trio.current_time()
            if message["t"] == "ready":
                if child.state == "starting":
                    child.state = "running"
                if child.role == "worker" and self.hub is not None:
                    self.hub.add_worker(child.key, message["pubsub"], message["prefix"])
                if child.role == "bridge" and self.hub is not None:
                    self.hub.resync_remote()
                child.ready.set()
                await self._publish_workers()
            elif message["t"] == "hb":
                child.report = message

    def _find(self, name: Any, generation: Any) -> Child | None:
        for child in self.children:
            if child.name == name and (child.role != "worker" or child.generation == generation):
                return child
        return None

    async def _check_health(self) -> None:
        """A child silent for heartbeat_timeout is hung: SIGTERM, then SIGKILL."""
        policy = self.config.workers
        while True:
            await trio.sleep(min(policy.heartbeat_interval, 1.0) / 2)
            now = trio.current_time()
            for child in list(self.children):
                last = child.last_heartbeat or child.started_at
                limit = policy.heartbeat_timeout if child.ready.is_set() else READY_TIMEOUT
                if child.state == "stopping" or now - last < limit:
                    continue
                logger.error(
                    "%s (pid %d) missed heartbeats for %.1fs: terminating it",
                    child.name,
                    child.pid,
                    now - last,
                )
                child.state = "stopping"
                assert self._nursery is not None
                self._nursery.start_soon(self._terminate, child, KILL_GRACE)

    async def _terminate(self, child: Child, grace: float) -> None:
        child.signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            await child.process.wait()
            return
        logger.error("%s (pid %d) ignored SIGTERM: killing it", child.name, child.pid)
        child.signal(signal.SIGKILL)

    def worker_table(self) -> list[dict[str, Any]]:
        table = []
        for child in self.children:
            if child.role != "worker" or not child.ready.is_set() or child.state != "running":
                continue
            report = child.report
            table.append(
                {
                    "id": child.name,
                    "gen": child.generation,
                    "handoff": child.handoff_path,
                    "sockets": report.get("sockets", 0),
                    "received": report.get("received"),
                }
            )
        return table

    async def _publish_workers(self) -> None:
        if self._events is not None:
            message = _ipc.topic_message(
                _ipc.TOPIC_ACCEPTOR, "workers", workers=self.worker_table()
            )
            await self._events.asend(message)

    async def _publish_periodically(self) -> None:
        while True:
            await trio.sleep(self.config.workers.heartbeat_interval)
            await self._publish_workers()

    # -- signals, reload, shutdown ---------------------------------------------------

    async def _handle_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.request_reload()
                else:
                    logger.info("received %s: shutting down", signal.Signals(signum).name)
                    assert self._nursery is not None
                    self._nursery.start_soon(self.shutdown)

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested = trio.Event()
            if not self.stopping:
                await self.roll_workers()

    async def roll_workers(self) -> None:
        """Replace each worker in turn: the new one is ready (and receiving
        sockets) before the old one drains; other workers are not touched."""
        logger.info("rolling workers")
        for old in [c for c in self.children if c.role == "worker" and c.state == "running"]:
            if self.stopping:
                return
            if old.process.returncode is not None or self._child(old.name) is not old:
                continue  # it died (and was replaced) since the roll began
            new = await self._start("worker", old.name)
            new.restarts = old.restarts
            with trio.move_on_after(READY_TIMEOUT):
                await new.ready.wait()
            if not new.ready.is_set():
                logger.error("new %s did not become ready; keeping the old one", old.name)
                continue
            old.state = "draining"
            old.stop_requested = True
            await self._publish_workers()
            await self._drain(old)
        logger.info("workers rolled")

    async def _drain(self, worker: Child) -> None:
        """Ask a worker to drain (the nng drain command), then insist: SIGTERM
        once its graceful timeout has passed, SIGKILL after shutdown_timeout."""
        if not worker.ready.is_set():  # not listening for commands yet
            await self._terminate(worker, KILL_GRACE)
            return
        if self._events is not None:
            await self._events.asend(
                _ipc.topic_message(_ipc.worker_topic(worker.name, worker.generation), "drain")
            )
        with trio.move_on_after(self.config.server.graceful_timeout + 1.0):
            await worker.process.wait()
            return
        logger.error("%s (pid %d) did not drain in time: terminating it", worker.name, worker.pid)
        await self._terminate(worker, KILL_GRACE)

    async def shutdown(self) -> None:
        """Stop accepting, drain the workers within shutdown_timeout, then exit."""
        if self.stopping:
            return
        self.stopping = True
        for child in self.children:
            child.stop_requested = True
            child.state = "stopping"
        acceptor = self._child("acceptor")
        if acceptor is not None:
            await self._terminate(acceptor, KILL_GRACE)
        async with trio.open_nursery() as drains:
            for child in list(self.children):
                if child.role == "worker":
                    drains.start_soon(self._drain, child)
                else:
                    drains.start_soon(self._terminate, child, KILL_GRACE)
        with trio.move_on_after(KILL_GRACE):
            while self.children:
                await trio.sleep(0.05)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    # -- control -----------------------------------------------------------------------

    async def _serve_control(self, control: pynng.Socket) -> None:
        while True:
            request = await control.arecv()
            await control.asend(await _control.handle_request(self, request))

    def publish(self, topic: str, data: str | bytes) -> int:
        """Publish from outside (control socket): to every subscribed worker."""
        if self.hub is None:
            return 0
        self.hub.handle(None, [["pub", topic, data]], {})
        return len(self.hub.topics.get(topic, ()))

    def _pubsub_status(self) -> dict[str, Any]:
        """The hub's figures and every drop counter of the pub/sub path."""
        if self.hub is None:
            return {}
        result = self.hub.statistics()
        result["dropped_workers"] = sum(
            c.report.get("pubsub_dropped", 0) for c in self.children if c.role == "worker"
        )
        if self.config.server.pubsub:
            bridge = self._child("bridge")
            link = self.hub.remote
            result["dropped_bridge"] = (bridge.report.get("dropped", 0) if bridge else 0) + (
                getattr(link, "dropped", 0)
            )
        return result

    def status(self) -> dict[str, Any]:
        now = trio.current_time()
        processes = []
        for child in sorted(self.children, key=lambda c: (c.role != "acceptor", c.name)):
            entry: dict[str, Any] = {
                "name": child.name,
                "role": child.role,
                "pid": child.pid,
                "state": child.state,
                "uptime": round(now - child.started_at, 3),
                "restarts": child.restarts,
            }
            if child.role == "worker":
                entry["sockets"] = child.report.get("sockets", 0)
            processes.append(entry)
        acceptor = self._child("acceptor")
        report = acceptor.report if acceptor is not None else {}
        return {
            "pid": os.getpid(),
            "port": self.port,
            "uptime": round(time.time() - self.started_wall, 3),
            "processes": processes,
            "pubsub": self._pubsub_status(),
            "totals": {
                "sockets": sum(p.get("sockets", 0) for p in processes),
                "handed_off": report.get("handed", 0),
                "rejected_handshakes": report.get("rejected", 0),
                "restarts": self.restarts_total,
            },
        }
